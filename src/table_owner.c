/*
 * table_owner.c
 *		Statements on a staging table (the touches of resync() and
 *		retry_dead_letters()) run as the table's owner, as a security-restricted
 *		operation with a pinned search_path, the way REFRESH MATERIALIZED VIEW
 *		runs a view's query. Triggers, defaults, generated columns, CHECK
 *		constraints, policies and operators that the owner wrote then run with
 *		the owner's rights, never those of the superuser who asked. Row-level
 *		security is off for the statement: a policy that would hide rows (under
 *		FORCE ROW LEVEL SECURITY) makes it fail rather than touch fewer rows.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(as_table_owner);

/* Owner of a relation, or an error naming it when it does not exist */
static Oid
RelationOwner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/* A text value allocated where it survives SPI_finish() */
static text *
TextInCallerContext(const char *s)
{
	size_t		len = strlen(s);
	text	   *t = (text *) SPI_palloc(VARHDRSZ + len);

	SET_VARSIZE(t, VARHDRSZ + len);
	memcpy(VARDATA(t), s, len);
	return t;
}

/*
 * Run a statement with text parameters through SPI; returns the first column
 * of the first row of a query (NULL when none), or the rows processed
 */
static text *
RunStatement(const char *statement, ArrayType *args)
{
	Datum	   *values;
	bool	   *isnull;
	int			nargs;
	Oid		   *types;
	char	   *nulls;
	text	   *result = NULL;
	int			ret;
	int			i;

	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT, &values, &isnull, &nargs);
	types = palloc(sizeof(Oid) * Max(nargs, 1));
	nulls = palloc(Max(nargs, 1));
	for (i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		nulls[i] = isnull[i] ? 'n' : ' ';
	}
	SPI_connect();
	ret = SPI_execute_with_args(statement, nargs, types, values, nulls, false, 0);
	if (ret < 0)
		elog(ERROR, "cosmos_sink: statement failed: %s", SPI_result_code_string(ret));
	if (ret == SPI_OK_SELECT)
	{
		char	   *value = SPI_processed > 0 ?
			SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;

		if (value != NULL)
			result = TextInCallerContext(value);
	}
	else
	{
		char		count[32];

		snprintf(count, sizeof(count), UINT64_FORMAT, (uint64) SPI_processed);
		result = TextInCallerContext(count);
	}
	SPI_finish();
	return result;
}

/*
 * as_table_owner(staging_table, statement, VARIADIC args text[]) -> text:
 * superusers only (the worker, and superusers calling resync() or
 * retry_dead_letters()); it can only ever lower the rights a statement runs with.
 */
Datum
as_table_owner(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *statement;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	text	   *result;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to run statements as a table's owner")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("staging_table, statement and args must not be NULL")));
	relid = PG_GETARG_OID(0);
	statement = text_to_cstring(PG_GETARG_TEXT_PP(1));
	owner = RelationOwner(relid);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	/* a policy that would hide rows raises an error instead (FORCE ROW LEVEL SECURITY) */
	(void) set_config_option("row_security", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	result = RunStatement(statement, PG_GETARG_ARRAYTYPE_P(2));

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}
