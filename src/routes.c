/*
 * routes.c
 *		add_route() and remove_route(): validate a staging table against what
 *		forwarding needs (id, partition key, replica identity), make sure the
 *		slot exists, and record the route in cosmos_sink.routes.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "replication/slot.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "compat.h"
#include "cosmos_sink.h"
#include "document.h"
#include "route.h"
#include "slot_guard.h"
#include "status.h"

PG_FUNCTION_INFO_V1(add_route);
PG_FUNCTION_INFO_V1(add_route_text);
PG_FUNCTION_INFO_V1(remove_route);
PG_FUNCTION_INFO_V1(route_changed);

/* OID of cosmos_sink.routes under the current (possibly historic) snapshot */
Oid
RoutesTableOid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid(COSMOS_SINK_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(ROUTES_TABLE, nsp) : InvalidOid;

	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("cosmos_sink.routes does not exist"),
				 errhint("Run CREATE EXTENSION cosmos_sink.")));
	return relid;
}

/* OID of a table of the extension's schema, or InvalidOid (any snapshot) */
Oid
ExtensionTableOid(const char *name)
{
	Oid			nsp = get_namespace_oid(COSMOS_SINK_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

/* Routes only make sense in the database the worker forwards */
void
CheckRouteDatabase(void)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	if (strcmp(dbname, CosmosSinkDatabase) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cosmos_sink forwards database \"%s\", not \"%s\"",
						CosmosSinkDatabase, dbname),
				 errhint("Add routes while connected to \"%s\", or set cosmos_sink.database = '%s' in postgresql.conf and restart the server.",
						 CosmosSinkDatabase, dbname)));
}

/* Database and container names: non-empty, <= 255 chars, none of / \ ? # */
static void
CheckCosmosName(const char *what, const char *name)
{
	if (name[0] == '\0' || strlen(name) > 255 || strpbrk(name, "/\\?#") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Cosmos DB %s name \"%s\"", what, name),
				 errhint("Cosmos DB names have 1 to 255 characters and no /, \\, ? or #.")));
}

/* The staging table must be a permanent plain table owned by the caller */
static void
CheckStagingTable(Oid relid)
{
	char		relkind = get_rel_relkind(relid);
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (relkind == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a partitioned table", name),
				 errhint("Route each partition with its own add_route() call.")));
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", name),
				 errhint("Only plain tables can be staging tables: views, materialized views and foreign tables are not decoded.")));
	if (get_rel_persistence(relid) != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a temporary or unlogged table", name),
				 errhint("Its changes are not written to WAL; use ALTER TABLE %s SET LOGGED.",
						 quote_identifier(name))));
	if (!CompatRelationOwnerCheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to route it", name)));
}

/* Resolve a column name of the staging table, or say which columns exist */
static AttrNumber
ResolveColumn(Relation rel, const char *what, const char *colname)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), colname);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s column \"%s\" does not exist in table %s",
						what, colname, RelationGetRelationName(rel)),
				 errhint("Name a column of %s (\\d %s lists them).",
						 RelationGetRelationName(rel), RelationGetRelationName(rel))));
	if (attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("%s column \"%s\" is a system column", what, colname),
				 errhint("Name a user column.")));
	return attnum;
}

/* The id column: the one given, else the single-column primary key */
static AttrNumber
ResolveIdColumn(Relation rel, const char *id_column)
{
	Oid			pkoid;
	Relation	pkrel;
	AttrNumber	attnum;
	int			nkeys;

	if (id_column != NULL)
		return ResolveColumn(rel, "id", id_column);

	RelationGetIndexList(rel);
	pkoid = rel->rd_pkindex;
	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table %s has no primary key to take the document id from",
						RelationGetRelationName(rel)),
				 errhint("Pass id_column => 'column' naming the column whose value becomes the document id.")));
	pkrel = index_open(pkoid, AccessShareLock);
	nkeys = pkrel->rd_index->indnkeyatts;
	attnum = pkrel->rd_index->indkey.values[0];
	index_close(pkrel, AccessShareLock);
	if (nkeys != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table %s has a composite primary key", RelationGetRelationName(rel)),
				 errhint("Pass id_column => 'column' naming the column whose value becomes the document id.")));
	return attnum;
}

/* Partition key values must be JSON scalars (string, number, boolean) */
static void
CheckPartitionKeyType(Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	JsonTypeInfo *type = DocumentTypeInfo(att->atttypid);

	if (type->category == JSONCAT_ARRAY || type->category == JSONCAT_COMPOSITE ||
		type->category == JSONCAT_JSON || type->category == JSONCAT_JSONB ||
		type->category == JSONCAT_JSONCAST)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("partition key column \"%s\" has type %s, which is not a JSON scalar",
						NameStr(att->attname), format_type_be(att->atttypid)),
				 errhint("Cosmos DB partition key values are strings, numbers or booleans; use a column of such a type.")));
}

/* A column named "id" that is not the id column would be overwritten */
static void
CheckIdNameClash(Relation rel, AttrNumber id_attnum)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), "id");

	if (attnum != InvalidAttrNumber && attnum > 0 && attnum != id_attnum)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("column \"id\" of table %s would be overwritten by the document id",
						RelationGetRelationName(rel)),
				 errhint("Use it as the id (id_column => 'id') or rename it.")));
}

/* schema.table, quoted as needed */
static char *
QualifiedRelationName(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

/* Whether any column can hold an out-of-line (TOASTed) value */
static bool
HasToastableColumns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && att->attlen == -1 &&
			att->attstorage != TYPSTORAGE_PLAIN)
			return true;
	}
	return false;
}

/*
 * Make sure UPDATE and DELETE log what forwarding needs: the id and partition
 * key in the old key, and, when a column can be TOASTed, the whole old row (so
 * an UPDATE that leaves a TOASTed value alone still yields the real value).
 * Returns true when a default identity must become FULL; an identity the user
 * chose is never overridden, only reported with the command that fixes it.
 */
static bool
ReplicaIdentityNeedsFull(Relation rel, AttrNumber id_attnum, int npk, AttrNumber *pk_attnums,
						 bool *keys_covered)
{
	char		ident = rel->rd_rel->relreplident;
	Bitmapset  *keys;
	bool		toastable = HasToastableColumns(rel);
	const char *name = RelationGetRelationName(rel);
	int			i;

	*keys_covered = true;
	if (ident == REPLICA_IDENTITY_FULL)
		return false;

	keys = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_IDENTITY_KEY);
	if (ident == REPLICA_IDENTITY_NOTHING)
		keys = NULL;
	*keys_covered = bms_is_member(id_attnum - FirstLowInvalidHeapAttributeNumber, keys);
	for (i = 0; i < npk; i++)
		*keys_covered &= bms_is_member(pk_attnums[i] - FirstLowInvalidHeapAttributeNumber, keys);

	if (*keys_covered && !toastable)
		return false;
	if (ident == REPLICA_IDENTITY_DEFAULT)
		return true;
	if (!*keys_covered)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replica identity of table %s does not carry the id and partition key columns", name),
				 errdetail("UPDATE and DELETE must log the old id and partition key so the old document can be deleted."),
				 errhint("Run: ALTER TABLE %s REPLICA IDENTITY FULL;", QualifiedRelationName(rel))));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("replica identity of table %s must be FULL because its columns can be TOASTed", name),
			 errdetail("An UPDATE that leaves a TOASTed value unchanged logs no value for it; only the old row of REPLICA IDENTITY FULL has it."),
			 errhint("Run: ALTER TABLE %s REPLICA IDENTITY FULL;", QualifiedRelationName(rel))));
	return false;				/* not reached */
}

/* Switch a table's default replica identity to FULL, saying why */
static void
SetReplicaIdentityFull(const char *qualified, bool keys_covered)
{
	SPI_connect();
	SPI_exec(psprintf("ALTER TABLE %s REPLICA IDENTITY FULL", qualified), 0);
	SPI_finish();
	ereport(NOTICE,
			(errmsg("set REPLICA IDENTITY FULL on %s", qualified),
			 errdetail(keys_covered ?
					   "Its columns can be TOASTed; UPDATEs must log the whole old row so unchanged TOASTed values reach Cosmos DB." :
					   "Its primary key does not contain the id and partition key columns that DELETEs must log.")));
}

/* Refuse a second route for the same table */
static void
CheckNotRouted(Oid relid, const char *name)
{
	int			ret;

	SPI_connect();
	ret = SPI_execute_with_args("SELECT cosmos_database, container FROM cosmos_sink.routes WHERE staging_table = $1",
								1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(relid)},
								NULL, true, 1);
	if (ret == SPI_OK_SELECT && SPI_processed > 0)
	{
		char	   *db = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *coll = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table %s is already routed to %s/%s", name, db, coll),
				 errhint("Call cosmos_sink.remove_route('%s') first to route it elsewhere.", name)));
	}
	SPI_finish();
}

/* Tell decoding sessions (at this transaction's LSN) that routes changed */
static void
InvalidateRoutes(Oid relid)
{
	CacheInvalidateRelcacheByRelid(RoutesTableOid(false));
	CacheInvalidateRelcacheByRelid(relid);
}

/* Insert the route row and return it as a cosmos_sink.routes value */
static Datum
InsertRoute(Oid relid, const char *db, const char *container, Datum pkarray,
			const char *id_column)
{
	Datum		result;
	bool		isnull;

	SPI_connect();
	/* key_types: what the DDL guard keeps from changing */
	if (SPI_execute_with_args("INSERT INTO cosmos_sink.routes"
							  " (staging_table, cosmos_database, container, partition_key, id_column, key_types)"
							  " VALUES ($1, $2, $3, $4, $5::name,"
							  " ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)"
							  " FROM unnest($5 || $4) WITH ORDINALITY AS k(c, o)"
							  " JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attname = k.c"
							  " ORDER BY k.o)) RETURNING *",
							  5, (Oid[]) {OIDOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID},
							  (Datum[]) {ObjectIdGetDatum(relid), CStringGetTextDatum(db),
							  CStringGetTextDatum(container), pkarray,
							  CStringGetTextDatum(id_column)},
							  NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into cosmos_sink.routes");
	StatusNoteRouteId(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	return result;
}

/* Validate everything, then record the route */
static Datum
RouteAdd(Oid relid, const char *db, const char *container, ArrayType *pkcols,
		 const char *id_column)
{
	Relation	rel;
	Datum	   *pkvalues;
	bool	   *pknulls;
	int			npk;
	AttrNumber	pk_attnums[ROUTE_MAX_PK_COLUMNS];
	AttrNumber	id_attnum;
	char	   *name;
	char	   *qualified;
	bool		needs_full;
	bool		keys_covered;
	int			i,
				j;

	CheckRouteDatabase();
	CheckDecodingPrerequisites(ERROR);
	CheckCosmosName("database", db);
	CheckCosmosName("container", container);
	CheckStagingTable(relid);

	deconstruct_array(pkcols, TEXTOID, -1, false, TYPALIGN_INT, &pkvalues, &pknulls, &npk);
	if (npk < 1 || npk > ROUTE_MAX_PK_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition_key names %d columns", npk),
				 errhint("Name one column, or 2 to 3 columns for a hierarchical partition key.")));

	SlotGuardEnsureForRoute();

	/* writers wait from here on, so no transaction straddles the route */
	LockRelationOid(relid, ShareRowExclusiveLock);
	rel = relation_open(relid, NoLock);
	name = RelationGetRelationName(rel);

	for (i = 0; i < npk; i++)
	{
		if (pknulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("partition_key contains NULL"),
					 errhint("Name one to three columns.")));
		pk_attnums[i] = ResolveColumn(rel, "partition key", TextDatumGetCString(pkvalues[i]));
		for (j = 0; j < i; j++)
			if (pk_attnums[j] == pk_attnums[i])
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("partition key column \"%s\" is named twice",
								TextDatumGetCString(pkvalues[i]))));
		CheckPartitionKeyType(rel, pk_attnums[i]);
	}
	id_attnum = ResolveIdColumn(rel, id_column);
	CheckIdNameClash(rel, id_attnum);
	CheckNotRouted(relid, name);
	needs_full = ReplicaIdentityNeedsFull(rel, id_attnum, npk, pk_attnums, &keys_covered);
	qualified = QualifiedRelationName(rel);
	relation_close(rel, NoLock);
	if (needs_full)
		SetReplicaIdentityFull(qualified, keys_covered);

	InvalidateRoutes(relid);
	return InsertRoute(relid, db, container, PointerGetDatum(pkcols),
					   get_attname(relid, id_attnum, false));
}

/* Text of a non-null argument, or an error naming it */
static char *
RequiredTextArg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
	return TextDatumGetCString(PG_GETARG_DATUM(argno));
}

/* Shared argument handling of both add_route() signatures */
static Datum
AddRouteArgs(FunctionCallInfo fcinfo, ArrayType *pkcols)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("staging_table must not be NULL")));
	return RouteAdd(PG_GETARG_OID(0),
					RequiredTextArg(fcinfo, 1, "cosmos_database"),
					RequiredTextArg(fcinfo, 2, "container"),
					pkcols,
					PG_ARGISNULL(4) ? NULL : NameStr(*PG_GETARG_NAME(4)));
}

/* add_route(staging_table, cosmos_database, container, partition_key text[], id_column) */
Datum
add_route(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("partition_key must not be NULL")));
	return AddRouteArgs(fcinfo, PG_GETARG_ARRAYTYPE_P(3));
}

/* add_route(..., partition_key text, ...): 'col' or an array literal '{a,b}' */
Datum
add_route_text(PG_FUNCTION_ARGS)
{
	char	   *pk = RequiredTextArg(fcinfo, 3, "partition_key");
	ArrayType  *pkcols;

	if (pk[0] == '{')
		pkcols = DatumGetArrayTypeP(OidFunctionCall3(F_ARRAY_IN, CStringGetDatum(pk),
													 ObjectIdGetDatum(TEXTOID),
													 Int32GetDatum(-1)));
	else
	{
		Datum		elem = CStringGetTextDatum(pk);

		pkcols = construct_array(&elem, 1, TEXTOID, -1, false, TYPALIGN_INT);
	}
	return AddRouteArgs(fcinfo, pkcols);
}

/* Name of a relation for messages, or its OID when it no longer exists */
static const char *
RelationNameOrOid(Oid relid)
{
	char	   *name = get_rel_name(relid);

	return name ? name : psprintf("%u", relid);
}

/* remove_route(staging_table): stop forwarding the table, return the old route */
Datum
remove_route(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Datum		result;

	CheckRouteDatabase();
	/* as strict as add_route(): only the table's owner (a superuser for a table gone); before any lock */
	if (get_rel_name(relid) != NULL ? !CompatRelationOwnerCheck(relid, GetUserId()) : !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to remove its route", RelationNameOrOid(relid))));
	LockRelationOid(relid, ShareRowExclusiveLock);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM cosmos_sink.routes WHERE staging_table = $1 RETURNING *",
							  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(relid)},
							  NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete from cosmos_sink.routes");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not routed", RelationNameOrOid(relid)),
				 errhint("SELECT staging_table FROM cosmos_sink.routes lists the routed tables.")));
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	InvalidateRoutes(relid);
	PG_RETURN_DATUM(result);
}

/* route_changed(): tell decoding sessions the route rows changed (event triggers) */
Datum
route_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(RoutesTableOid(false));
	PG_RETURN_VOID();
}
