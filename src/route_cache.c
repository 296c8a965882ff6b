/*
 * route_cache.c
 *		The output plugin's view of cosmos_sink.routes. Read under the decoding
 *		(historic) snapshot, so a route added or removed mid-stream takes effect
 *		at the LSN of the transaction that changed it; refreshed by the relcache
 *		invalidations that add_route()/remove_route() log.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "nodes/bitmapset.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "route.h"

/* One row of cosmos_sink.routes */
typedef struct RouteRow
{
	Oid			relid;			/* hash key */
	int32		route_id;
	char	   *cosmos_database;
	char	   *container;
	int			npk;
	char	   *pk_columns[ROUTE_MAX_PK_COLUMNS];
	char	   *id_column;
} RouteRow;

static MemoryContext RouteCacheContext = NULL;
static MemoryContext RouteRowsContext = NULL;
static HTAB *RouteHash = NULL;	/* relid -> RouteInfo */
static HTAB *RouteRows = NULL;	/* relid -> RouteRow */
static Oid	RoutesOid = InvalidOid;
static Oid	ResendDeletesOid = InvalidOid;
static Oid	ResendRowsOid = InvalidOid;
static bool RoutesLoaded = false;
static bool CallbackRegistered = false;

/* Mark every entry stale, and the route rows too */
static void
InvalidateAll(void)
{
	HASH_SEQ_STATUS status;
	RouteInfo  *entry;

	RoutesLoaded = false;
	hash_seq_init(&status, RouteHash);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/*
 * Relcache callback: a change of the routes table (or of anything while the
 * extension is absent) reloads routes; a change of one table rebuilds its entry.
 */
static void
RouteCacheInvalidate(Datum arg, Oid relid)
{
	RouteInfo  *entry;

	if (RouteHash == NULL)
		return;
	if (!OidIsValid(relid) || !OidIsValid(RoutesOid) || relid == RoutesOid)
	{
		InvalidateAll();
		return;
	}
	entry = hash_search(RouteHash, &relid, HASH_FIND, NULL);
	if (entry != NULL)
		entry->valid = false;
}

/* Create the cache for one decoding session */
void
RouteCacheCreate(MemoryContext parent)
{
	HASHCTL		ctl;

	RouteCacheContext = AllocSetContextCreate(parent, "cosmos_sink route cache",
											  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RouteInfo);
	ctl.hcxt = RouteCacheContext;
	RouteHash = hash_create("cosmos_sink routes by relation", 128, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	RouteRows = NULL;
	RouteRowsContext = NULL;
	RoutesLoaded = false;
	RoutesOid = InvalidOid;
	/* callbacks cannot be unregistered: register once, no-op while RouteHash is NULL */
	if (!CallbackRegistered)
	{
		CacheRegisterRelcacheCallback(RouteCacheInvalidate, (Datum) 0);
		CallbackRegistered = true;
	}
}

/* Drop the cache at the end of a decoding session */
void
RouteCacheDestroy(void)
{
	RouteHash = NULL;
	RouteRows = NULL;
	RouteRowsContext = NULL;
	if (RouteCacheContext != NULL)
		MemoryContextDelete(RouteCacheContext);
	RouteCacheContext = NULL;
}

/* Copy one routes tuple into a RouteRow */
static void
ReadRouteRow(HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Oid			relid = DatumGetObjectId(heap_getattr(tuple, Anum_routes_staging_table, desc, &isnull));
	RouteRow   *row = hash_search(RouteRows, &relid, HASH_ENTER, NULL);
	Datum	   *pk;
	int			i;

	row->route_id = DatumGetInt32(heap_getattr(tuple, Anum_routes_route_id, desc, &isnull));
	row->cosmos_database = TextDatumGetCString(heap_getattr(tuple, Anum_routes_cosmos_database, desc, &isnull));
	row->container = TextDatumGetCString(heap_getattr(tuple, Anum_routes_container, desc, &isnull));
	row->id_column = pstrdup(NameStr(*DatumGetName(heap_getattr(tuple, Anum_routes_id_column, desc, &isnull))));
	deconstruct_array(DatumGetArrayTypeP(heap_getattr(tuple, Anum_routes_partition_key, desc, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &pk, NULL, &row->npk);
	row->npk = Min(row->npk, ROUTE_MAX_PK_COLUMNS);
	for (i = 0; i < row->npk; i++)
		row->pk_columns[i] = TextDatumGetCString(pk[i]);
}

/* (Re)load every route visible to the current snapshot */
static void
LoadRouteRows(void)
{
	HASHCTL		ctl;
	MemoryContext old;

	if (RouteRowsContext != NULL)
		MemoryContextDelete(RouteRowsContext);
	RouteRowsContext = AllocSetContextCreate(RouteCacheContext, "cosmos_sink route rows",
											 ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RouteRow);
	ctl.hcxt = RouteRowsContext;
	RouteRows = hash_create("cosmos_sink route rows", 16, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	old = MemoryContextSwitchTo(RouteRowsContext);
	RoutesOid = RoutesTableOid(true);
	ResendDeletesOid = ExtensionTableOid(RESEND_DELETES_TABLE);
	ResendRowsOid = ExtensionTableOid(RESEND_ROWS_TABLE);
	if (OidIsValid(RoutesOid))
	{
		Relation	rel = table_open(RoutesOid, AccessShareLock);
		SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
		HeapTuple	tuple;

		while (HeapTupleIsValid(tuple = systable_getnext(scan)))
			ReadRouteRow(tuple, RelationGetDescr(rel));
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
	}
	MemoryContextSwitchTo(old);
	RoutesLoaded = true;
}

/* Attribute number of a live column by name in a descriptor, or 0 */
static AttrNumber
FindColumn(TupleDesc desc, const char *name)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	return InvalidAttrNumber;
}

/* Resolve the id and partition key columns by name; note what is missing */
static void
ResolveRouteColumns(RouteInfo *entry, RouteRow *row, TupleDesc desc)
{
	StringInfoData names;
	int			i;

	entry->id_attnum = FindColumn(desc, row->id_column);
	if (entry->id_attnum == InvalidAttrNumber)
		entry->problem = psprintf("id column \"%s\" no longer exists in %s",
								  row->id_column, entry->table_name);
	entry->npk = row->npk;
	initStringInfo(&names);
	appendStringInfoChar(&names, '[');
	for (i = 0; i < row->npk; i++)
	{
		if (i > 0)
			appendStringInfoChar(&names, ',');
		escape_json(&names, row->pk_columns[i]);
		entry->pk_attnums[i] = FindColumn(desc, row->pk_columns[i]);
		if (entry->pk_attnums[i] == InvalidAttrNumber)
			entry->problem = psprintf("partition key column \"%s\" no longer exists in %s",
									  row->pk_columns[i], entry->table_name);
	}
	appendStringInfoChar(&names, ']');
	entry->pk_columns = names.data;
}

/* Whether the old tuple of UPDATE/DELETE carries the id and partition key */
static void
ResolveOldTupleContents(RouteInfo *entry, Relation rel)
{
	Bitmapset  *keys;
	int			i;

	entry->old_is_full = rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL;
	if (entry->old_is_full)
	{
		entry->old_has_keys = true;
		return;
	}
	if (rel->rd_rel->relreplident == REPLICA_IDENTITY_NOTHING || entry->problem)
	{
		entry->old_has_keys = false;
		return;
	}
	keys = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_IDENTITY_KEY);
	entry->old_has_keys = bms_is_member(entry->id_attnum - FirstLowInvalidHeapAttributeNumber, keys);
	for (i = 0; i < entry->npk; i++)
		entry->old_has_keys &= bms_is_member(entry->pk_attnums[i] - FirstLowInvalidHeapAttributeNumber, keys);
}

/* Build the entry of one relation from the route rows and its descriptor */
static void
BuildRouteInfo(RouteInfo *entry, Relation rel)
{
	RouteRow   *row;
	MemoryContext old;

	if (entry->cxt != NULL)
		MemoryContextDelete(entry->cxt);
	entry->cxt = AllocSetContextCreate(RouteCacheContext, "cosmos_sink route entry",
									   ALLOCSET_SMALL_SIZES);
	entry->problem = NULL;
	entry->announced = false;
	row = hash_search(RouteRows, &entry->relid, HASH_FIND, NULL);
	entry->routed = row != NULL;
	entry->resend_deletes = OidIsValid(ResendDeletesOid) && entry->relid == ResendDeletesOid;
	entry->resend_rows = OidIsValid(ResendRowsOid) && entry->relid == ResendRowsOid;
	if (row != NULL)
	{
		old = MemoryContextSwitchTo(entry->cxt);
		entry->route_id = row->route_id;
		entry->cosmos_database = pstrdup(row->cosmos_database);
		entry->container = pstrdup(row->container);
		entry->table_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													   RelationGetRelationName(rel));
		entry->shape = DocumentShapeBuild(RelationGetDescr(rel));
		ResolveRouteColumns(entry, row, RelationGetDescr(rel));
		ResolveOldTupleContents(entry, rel);
		MemoryContextSwitchTo(old);
	}
	entry->valid = true;
}

/* The route of a relation at the current decoding position (routed=false if none) */
RouteInfo *
RouteCacheLookup(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	RouteInfo  *entry;
	bool		found;

	if (!RoutesLoaded)
		LoadRouteRows();
	entry = hash_search(RouteHash, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->cxt = NULL;
		entry->valid = false;
	}
	if (!entry->valid)
		BuildRouteInfo(entry, rel);
	return entry;
}
