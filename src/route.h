/*
 * route.h
 *		The route registry: which staging table goes to which Cosmos container,
 *		as stored in cosmos_sink.routes and as seen by the output plugin under
 *		the decoding snapshot (with the column facts needed to build documents).
 */
#ifndef COSMOS_SINK_ROUTE_H
#define COSMOS_SINK_ROUTE_H

#include "postgres.h"

#include "utils/rel.h"

#include "document.h"

/* Columns of cosmos_sink.routes, in table order */
#define Natts_routes				8
#define Anum_routes_route_id		1
#define Anum_routes_staging_table	2
#define Anum_routes_cosmos_database	3
#define Anum_routes_container		4
#define Anum_routes_partition_key	5
#define Anum_routes_id_column		6
#define Anum_routes_created_at		7
#define Anum_routes_key_types		8

#define ROUTE_MAX_PK_COLUMNS 3
#define ROUTES_TABLE "routes"
#define RESEND_DELETES_TABLE "resend_deletes"
#define RESEND_ROWS_TABLE "resend_rows"

/* What the output plugin knows about one relation at the current LSN */
typedef struct RouteInfo
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false after a relcache invalidation */
	bool		routed;			/* false: not a staging table (now) */
	bool		resend_deletes;	/* cosmos_sink.resend_deletes itself */
	bool		resend_rows;	/* cosmos_sink.resend_rows itself */
	MemoryContext cxt;			/* holds everything below */
	int32		route_id;
	char	   *table_name;		/* schema.table */
	char	   *cosmos_database;
	char	   *container;
	char	   *problem;		/* why documents cannot be built, or NULL */
	AttrNumber	id_attnum;
	int			npk;
	AttrNumber	pk_attnums[ROUTE_MAX_PK_COLUMNS];
	bool		old_is_full;	/* REPLICA IDENTITY FULL: old tuple is whole */
	bool		old_has_keys;	/* old tuple carries id and partition key */
	bool		announced;		/* route record sent since this entry was built */
	char	   *pk_columns;		/* partition key column names as a JSON array */
	DocumentShape *shape;		/* per-column JSON keys and types */
} RouteInfo;

/* route_cache.c: lookups from the output plugin */
extern void RouteCacheCreate(MemoryContext parent);
extern void RouteCacheDestroy(void);
extern RouteInfo *RouteCacheLookup(Relation rel);

/* routes.c: helpers shared with the worker */
extern Oid	RoutesTableOid(bool missing_ok);
extern Oid	ExtensionTableOid(const char *name);
extern void CheckRouteDatabase(void);

#endif							/* COSMOS_SINK_ROUTE_H */
