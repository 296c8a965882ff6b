/*
 * plugin.c
 *		The cosmos_sink logical decoding output plugin: committed changes of
 *		routed tables become change records, one per change, in commit order.
 *		No streaming or two-phase callbacks, so nothing uncommitted is emitted.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "compat.h"
#include "cosmos.h"
#include "cosmos_sink.h"
#include "document.h"
#include "record.h"
#include "route.h"

typedef enum OutputFormat
{
	FORMAT_JSON,				/* one JSON object per change, for people and tools */
	FORMAT_BINARY				/* compact records for the worker */
} OutputFormat;

/* Whether UPDATEs that change nothing are left out */
typedef enum SkipUnchanged
{
	SKIP_UNCHANGED_SETTING,		/* as cosmos_sink.skip_unchanged says (the worker) */
	SKIP_UNCHANGED_ON,			/* option skip_unchanged on */
	SKIP_UNCHANGED_OFF			/* option skip_unchanged off */
} SkipUnchanged;

typedef struct PluginState
{
	MemoryContext context;		/* per change, reset after each */
	MemoryContext txn_context;	/* per transaction, reset at each begin */
	OutputFormat format;
	SkipUnchanged skip_unchanged;
	bool		txn_has_records;	/* this transaction emitted something */
	List	   *txn_resend_relids;	/* tables whose touches this transaction must send */
} PluginState;

/* A row of a decoded tuple, deformed */
typedef struct RowImage
{
	bool		present;
	Datum	   *values;
	bool	   *nulls;
} RowImage;

/*
 * Where building a document stops: past Cosmos DB's 2 MB item limit (the
 * worker parks what is over it with the document), plus slack, so that no row
 * makes the worker render more than a bounded amount.
 */
#define DOCUMENT_BUILD_LIMIT	(COSMOS_MAX_DOC_BYTES + 64 * 1024)

/* Longest id or partition key text rendered; Cosmos DB takes far less */
#define KEY_BUILD_LIMIT			(64 * 1024)

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Refuse an option given twice (pgoutput's message) */
static void
RefuseRepeatedOption(bool *given)
{
	if (*given)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("conflicting or redundant options")));
	*given = true;
}

/* Parse plugin options (pgoutput style: each at most once, unknown ones refused) */
static void
ParseOptions(List *options, PluginState *state)
{
	ListCell   *lc;
	bool		format_given = false;
	bool		skip_given = false;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "skip_unchanged") == 0)
		{
			RefuseRepeatedOption(&skip_given);
			state->skip_unchanged = defGetBoolean(elem) ? SKIP_UNCHANGED_ON : SKIP_UNCHANGED_OFF;
		}
		else if (strcmp(elem->defname, "format") == 0)
		{
			char	   *format = defGetString(elem);

			RefuseRepeatedOption(&format_given);
			if (strcmp(format, "json") == 0)
				state->format = FORMAT_JSON;
			else if (strcmp(format, "binary") == 0)
				state->format = FORMAT_BINARY;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for option \"format\"", format),
						 errhint("Use format 'json' (one JSON object per change) or 'binary' (the worker's records).")));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is not known to the cosmos_sink output plugin", elem->defname),
					 errhint("The options are \"format\" ('json' or 'binary') and \"skip_unchanged\" (a boolean; default: cosmos_sink.skip_unchanged).")));
	}
}

/* Startup: options, memory, route cache; no catalog access here */
static void
PluginStartup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	PluginState *state = palloc0(sizeof(PluginState));

	state->context = AllocSetContextCreate(ctx->context, "cosmos_sink change",
										   ALLOCSET_DEFAULT_SIZES);
	state->txn_context = AllocSetContextCreate(ctx->context, "cosmos_sink transaction",
											   ALLOCSET_SMALL_SIZES);
	state->format = FORMAT_JSON;
	state->skip_unchanged = SKIP_UNCHANGED_SETTING;
	if (!is_init)
		ParseOptions(ctx->output_plugin_options, state);
	opt->output_type = state->format == FORMAT_BINARY ?
		OUTPUT_PLUGIN_BINARY_OUTPUT : OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;
	ctx->output_plugin_private = state;
	RouteCacheCreate(ctx->context);
}

/* Shutdown: drop the route cache (its callbacks become no-ops) */
static void
PluginShutdown(LogicalDecodingContext *ctx)
{
	RouteCacheDestroy();
}

/* Begin: nothing is written until the transaction has a routed change */
static void
PluginBegin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	PluginState *state = ctx->output_plugin_private;

	state->txn_has_records = false;
	state->txn_resend_relids = NIL;
	MemoryContextReset(state->txn_context);
}

/* Commit: the worker needs the end LSN of every transaction it got records of */
static void
PluginCommit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	PluginState *state = ctx->output_plugin_private;

	CompatOutputPluginUpdateProgress(ctx, !state->txn_has_records);
	if (!state->txn_has_records || state->format != FORMAT_BINARY)
		return;
	OutputPluginPrepareWrite(ctx, true);
	RecordWriteCommit(ctx->out, txn->end_lsn, CompatTxnCommitTime(txn), txn->xid);
	OutputPluginWrite(ctx, true);
}

/* Append the JSON form of a record (format=json) */
static void
WriteJsonRecord(StringInfo out, ReorderBufferTXN *txn, RouteInfo *route,
				const char *op, XLogRecPtr lsn, const char *id, const char *pk,
				const char *field, const char *body, bool body_is_json)
{
	char		buf[MAXDATELEN + 1];

	appendStringInfo(out, "{\"op\":\"%s\",\"table\":", op);
	escape_json(out, route->table_name);
	appendStringInfoString(out, ",\"cosmos_database\":");
	escape_json(out, route->cosmos_database);
	appendStringInfoString(out, ",\"container\":");
	escape_json(out, route->container);
	if (id != NULL)
	{
		appendStringInfoString(out, ",\"id\":");
		escape_json(out, id);
	}
	if (pk != NULL)
		appendStringInfo(out, ",\"partition_key\":%s", pk);
	appendStringInfo(out, ",\"xid\":%u,\"lsn\":\"%X/%X\",\"commit_time\":\"%s\"",
					 txn->xid, LSN_FORMAT_ARGS(lsn),
					 JsonEncodeDateTime(buf, TimestampTzGetDatum(CompatTxnCommitTime(txn)),
										TIMESTAMPTZOID, NULL));
	if (field != NULL)
	{
		appendStringInfo(out, ",\"%s\":", field);
		if (body_is_json)
			appendStringInfoString(out, body);
		else
			escape_json(out, body);
	}
	appendStringInfoChar(out, '}');
}

/* Binary format: tell the worker about a route before its first record */
static void
AnnounceRoute(LogicalDecodingContext *ctx, RouteInfo *route)
{
	OutputPluginPrepareWrite(ctx, true);
	RecordWriteRoute(ctx->out, route->route_id, route->relid, route->table_name,
					 route->cosmos_database, route->container, route->pk_columns);
	OutputPluginWrite(ctx, true);
	route->announced = true;
}

/* Open a change record (announcing its route first, in the binary format) */
static void
BeginRecord(LogicalDecodingContext *ctx, RouteInfo *route)
{
	PluginState *state = ctx->output_plugin_private;

	if (state->format == FORMAT_BINARY && !route->announced)
		AnnounceRoute(ctx, route);
	OutputPluginPrepareWrite(ctx, true);
}

/* Hand a finished change record to the consumer */
static void
EndRecord(LogicalDecodingContext *ctx)
{
	PluginState *state = ctx->output_plugin_private;

	OutputPluginWrite(ctx, true);
	state->txn_has_records = true;
}

/* Emit one change record in the session's format */
static void
EmitChange(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, RouteInfo *route,
		   char kind, XLogRecPtr lsn, const char *id, const char *pk, const char *body)
{
	PluginState *state = ctx->output_plugin_private;

	BeginRecord(ctx, route);
	if (state->format == FORMAT_BINARY)
		RecordWriteChange(ctx->out, kind, route->route_id, id, pk, body);
	else if (kind == RECORD_UPSERT)
		WriteJsonRecord(ctx->out, txn, route, "upsert", lsn, id, pk, "document", body, true);
	else if (kind == RECORD_DELETE)
		WriteJsonRecord(ctx->out, txn, route, "delete", lsn, id, pk, NULL, NULL, false);
	else
		WriteJsonRecord(ctx->out, txn, route, "error", lsn, id, pk, "error", body, false);
	EndRecord(ctx);
}

/* Deform a tuple of the relation into values/nulls */
static RowImage
DeformRow(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	RowImage	row = {false, NULL, NULL};

	if (tuple == NULL)
		return row;
	row.present = true;
	row.values = palloc(sizeof(Datum) * desc->natts);
	row.nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, row.values, row.nulls);
	return row;
}

/* Whether a datum is an on-disk TOAST pointer that decoding cannot read */
static inline bool
IsUnchangedToast(Datum value, bool isnull, DocumentColumn *col)
{
	return !isnull && col->toastable &&
		VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value));
}

/*
 * If column idx of the new row is an unchanged TOAST pointer, give it the old
 * row's value (when old_logs_it: the old row logs that column whole). False
 * when the value is nowhere in WAL.
 */
static bool
TakeFromOldRow(RowImage *newrow, RowImage *oldrow, int idx, DocumentColumn *col,
			   bool old_logs_it)
{
	if (!IsUnchangedToast(newrow->values[idx], newrow->nulls[idx], col))
		return true;
	if (!oldrow->present || !old_logs_it ||
		IsUnchangedToast(oldrow->values[idx], oldrow->nulls[idx], col))
		return false;
	newrow->values[idx] = oldrow->values[idx];
	newrow->nulls[idx] = oldrow->nulls[idx];
	return true;
}

/*
 * Give every unchanged TOASTed column of the new row its real value from the
 * old row (logged whole under REPLICA IDENTITY FULL). Returns a problem text
 * when a value is nowhere in WAL; never leaves a placeholder.
 */
static char *
ResolveUnchangedToast(RouteInfo *route, RowImage *newrow, RowImage *oldrow)
{
	int			i;

	for (i = 0; i < route->shape->natts; i++)
	{
		DocumentColumn *col = &route->shape->columns[i];

		if (!TakeFromOldRow(newrow, oldrow, i, col, route->old_is_full))
			return psprintf("UPDATE left TOASTed column \"%s\" unchanged and WAL has no copy of it; run ALTER TABLE %s REPLICA IDENTITY FULL, then cosmos_sink.resync() the table",
							col->name, route->table_name);
	}
	return NULL;
}

/* Attribute numbers (1-based) of a route's key columns: the id, then the partition key */
static int
KeyColumns(RouteInfo *route, AttrNumber *attnums)
{
	int			i;

	attnums[0] = route->id_attnum;
	for (i = 0; i < route->npk; i++)
		attnums[i + 1] = route->pk_attnums[i];
	return route->npk + 1;
}

/*
 * An UPDATE that leaves a TOASTed id or partition key unchanged logs a
 * pointer into the live TOAST table, which decoding must never read (it may
 * be gone by now): take the value from the old row, which logs the key
 * columns whole. A problem text when it is nowhere in WAL.
 */
static char *
ResolveUnchangedKeys(RouteInfo *route, RowImage *newrow, RowImage *oldrow)
{
	AttrNumber	attnums[ROUTE_MAX_PK_COLUMNS + 1];
	int			n;
	int			i;

	if (route->problem)
		return route->problem;
	n = KeyColumns(route, attnums);
	for (i = 0; i < n; i++)
	{
		int			idx = attnums[i] - 1;
		DocumentColumn *col = &route->shape->columns[idx];

		if (!TakeFromOldRow(newrow, oldrow, idx, col, route->old_has_keys))
			return psprintf("UPDATE left TOASTed key column \"%s\" unchanged and WAL has no copy of it; run ALTER TABLE %s REPLICA IDENTITY FULL, then cosmos_sink.resync() the table",
							col->name, route->table_name);
	}
	return NULL;
}

/*
 * Compute the document id and the partition key (a JSON array) of a row. Its
 * key columns are in WAL: inserted rows are whole, old rows flattened, and an
 * UPDATE's new row went through ResolveUnchangedKeys first.
 */
static char *
RowKeys(RouteInfo *route, RowImage *row, char **id, char **pk)
{
	StringInfoData buf;
	int			idx = route->id_attnum - 1;
	int			i;

	*id = NULL;
	*pk = NULL;
	if (route->problem)
		return route->problem;
	if (row->nulls[idx])
		return psprintf("id column of %s is NULL", route->table_name);
	*id = DocumentKeyText(row->values[idx], route->shape->columns[idx].type, KEY_BUILD_LIMIT);
	if (*id == NULL)
		return psprintf("id of a row of %s is over %d bytes (Cosmos DB ids have at most %d)",
						route->table_name, KEY_BUILD_LIMIT, COSMOS_MAX_ID_BYTES);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < route->npk; i++)
	{
		char	   *problem;

		idx = route->pk_attnums[i] - 1;
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		problem = DocumentAppendBounded(&buf, row->values[idx], row->nulls[idx],
										route->shape->columns[idx].type, KEY_BUILD_LIMIT);
		if (problem != NULL)
			return psprintf("partition key of a row of %s cannot be rendered: %s",
							route->table_name, problem);
	}
	appendStringInfoChar(&buf, ']');
	*pk = buf.data;
	return NULL;
}

/* Why a row of a route cannot become a document, for dead_letters */
static char *
RowProblem(RouteInfo *route, const char *problem)
{
	return psprintf("row of %s cannot become a document (limit %d bytes): %s",
					route->table_name, DOCUMENT_BUILD_LIMIT, problem);
}

/* INSERT, or the new row of an UPDATE: upsert the document */
static void
EmitUpsert(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, RouteInfo *route,
		   XLogRecPtr lsn, RowImage *row, const char *id, const char *pk)
{
	PluginState *state = ctx->output_plugin_private;
	StringInfoData doc;
	int			record_start;
	int			body_start;
	char	   *problem;

	if (state->format == FORMAT_BINARY)
	{
		/* the worker's format: the document goes straight into the record */
		BeginRecord(ctx, route);
		record_start = ctx->out->len;
		body_start = RecordBeginBody(ctx->out, RECORD_UPSERT, route->route_id, id, pk);
		problem = DocumentAppendRow(ctx->out, route->shape, row->values, row->nulls, id,
									DOCUMENT_BUILD_LIMIT);
		if (problem == NULL)
			RecordEndBody(ctx->out, body_start);
		else
		{
			/* the same record becomes an error: the row goes to dead_letters */
			ctx->out->len = record_start;
			ctx->out->data[record_start] = '\0';
			RecordWriteChange(ctx->out, RECORD_ERROR, route->route_id, id, pk,
							  RowProblem(route, problem));
		}
		EndRecord(ctx);
		return;
	}
	initStringInfo(&doc);
	problem = DocumentAppendRow(&doc, route->shape, row->values, row->nulls, id,
								DOCUMENT_BUILD_LIMIT);
	if (problem == NULL)
		EmitChange(ctx, txn, route, RECORD_UPSERT, lsn, id, pk, doc.data);
	else
		EmitChange(ctx, txn, route, RECORD_ERROR, lsn, id, pk, RowProblem(route, problem));
}

/* INSERT: one upsert */
static void
HandleInsert(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, RouteInfo *route,
			 Relation rel, ReorderBufferChange *change)
{
	RowImage	row = DeformRow(rel, CompatChangeNewTuple(change));
	char	   *id,
			   *pk,
			   *problem;

	problem = RowKeys(route, &row, &id, &pk);
	if (problem)
		EmitChange(ctx, txn, route, RECORD_ERROR, change->lsn, id, pk, problem);
	else
		EmitUpsert(ctx, txn, route, change->lsn, &row, id, pk);
}

/*
 * Whether this session leaves out the unchanged UPDATEs of a table: the
 * plugin option, else the setting; never for a table whose touches this
 * transaction marked (resync(), retry_dead_letters(): they must be sent)
 */
static bool
SkipsUnchanged(PluginState *state, Oid relid)
{
	bool		on = state->skip_unchanged == SKIP_UNCHANGED_SETTING ?
		CosmosSinkSkipUnchanged : state->skip_unchanged == SKIP_UNCHANGED_ON;

	return on && !list_member_oid(state->txn_resend_relids, relid);
}

/*
 * Whether two values of a column have the same bytes once decompressed
 * (datum_image_eq: no type's operator runs). A pointer into the TOAST table
 * is never read during decoding, so it never counts as equal.
 */
static bool
ValuesIdentical(Form_pg_attribute att, RowImage *a, RowImage *b, int idx)
{
	if (a->nulls[idx] || b->nulls[idx])
		return a->nulls[idx] && b->nulls[idx];
	if (att->attlen == -1 &&
		(VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(a->values[idx])) ||
		 VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(b->values[idx]))))
		return false;
	return datum_image_eq(a->values[idx], b->values[idx], att->attbyval, att->attlen);
}

/*
 * Whether an UPDATE left every column as it was, so the document would be
 * the same. Only with the whole old row in WAL (REPLICA IDENTITY FULL); the
 * new row's unchanged TOASTed values are taken from it first.
 */
static bool
RowUnchanged(RouteInfo *route, Relation rel, RowImage *newrow, RowImage *oldrow)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (!route->old_is_full || !oldrow->present || route->problem != NULL ||
		ResolveUnchangedToast(route, newrow, oldrow) != NULL)
		return false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && !ValuesIdentical(att, newrow, oldrow, i))
			return false;
	}
	return true;
}

/*
 * An unchanged row's UPDATE: nothing to send. The worker's format gets a
 * small record so the route's skipped counter moves; the JSON format, whose
 * readers want changes, gets nothing.
 */
static void
EmitSkipped(LogicalDecodingContext *ctx, RouteInfo *route)
{
	PluginState *state = ctx->output_plugin_private;

	if (state->format != FORMAT_BINARY)
		return;
	BeginRecord(ctx, route);
	RecordWriteSkipped(ctx->out, route->route_id);
	OutputPluginWrite(ctx, true);
}

/* UPDATE: upsert the new row; if the id or partition key moved, delete the old one first */
static void
HandleUpdate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, RouteInfo *route,
			 Relation rel, ReorderBufferChange *change)
{
	RowImage	newrow = DeformRow(rel, CompatChangeNewTuple(change));
	RowImage	oldrow = DeformRow(rel, CompatChangeOldTuple(change));
	char	   *id,
			   *pk,
			   *old_id,
			   *old_pk,
			   *problem;

	if (SkipsUnchanged(ctx->output_plugin_private, route->relid) &&
		RowUnchanged(route, rel, &newrow, &oldrow))
	{
		EmitSkipped(ctx, route);
		return;
	}
	problem = ResolveUnchangedKeys(route, &newrow, &oldrow);
	if (problem == NULL)
		problem = RowKeys(route, &newrow, &id, &pk);
	else
		id = pk = NULL;
	if (problem == NULL && oldrow.present && route->old_has_keys &&
		RowKeys(route, &oldrow, &old_id, &old_pk) == NULL &&
		(strcmp(id, old_id) != 0 || strcmp(pk, old_pk) != 0))
		EmitChange(ctx, txn, route, RECORD_DELETE, change->lsn, old_id, old_pk, NULL);
	if (problem == NULL)
		problem = ResolveUnchangedToast(route, &newrow, &oldrow);
	if (problem)
		EmitChange(ctx, txn, route, RECORD_ERROR, change->lsn, id, pk, problem);
	else
		EmitUpsert(ctx, txn, route, change->lsn, &newrow, id, pk);
}

/* DELETE: delete the document named by the old key */
static void
HandleDelete(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, RouteInfo *route,
			 Relation rel, ReorderBufferChange *change)
{
	RowImage	oldrow = DeformRow(rel, CompatChangeOldTuple(change));
	char	   *id = NULL,
			   *pk = NULL,
			   *problem;

	if (!oldrow.present || !route->old_has_keys)
		problem = psprintf("DELETE on %s logged no id and partition key; run ALTER TABLE %s REPLICA IDENTITY FULL",
						   route->table_name, route->table_name);
	else
		problem = RowKeys(route, &oldrow, &id, &pk);
	if (problem)
		EmitChange(ctx, txn, route, RECORD_ERROR, change->lsn, id, pk, problem);
	else
		EmitChange(ctx, txn, route, RECORD_DELETE, change->lsn, id, pk, NULL);
}

/*
 * An insert into cosmos_sink.resend_deletes (by retry_dead_letters(), which
 * only the extension owner can write): the delete of a document whose row is
 * gone, in commit order. Every value is checked before it is used.
 */
static void
HandleResendDelete(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
				   ReorderBufferChange *change)
{
	RowImage	row = DeformRow(rel, CompatChangeNewTuple(change));
	Relation	target;
	RouteInfo  *route;
	char	   *pk;
	char	   *id;
	char	   *problem = NULL;

	if (!row.present || RelationGetDescr(rel)->natts != 3 ||
		row.nulls[0] || row.nulls[1] || row.nulls[2])
		return;
	target = RelationIdGetRelation(DatumGetObjectId(row.values[0]));
	if (!RelationIsValid(target))
		return;
	route = RouteCacheLookup(target);
	if (route->routed)
	{
		pk = TextDatumGetCString(row.values[1]);
		id = TextDatumGetCString(row.values[2]);
		if (!CosmosPartitionKeyValid(pk, strlen(pk), route->npk, &problem))
			problem = psprintf("resent delete of %s: %s", route->table_name, problem);
		else if (CosmosInvalidIdReason(id, strlen(id)) != NULL)
			problem = psprintf("resent delete of %s: %s", route->table_name,
							   CosmosInvalidIdReason(id, strlen(id)));
		if (problem != NULL)
			EmitChange(ctx, txn, route, RECORD_ERROR, change->lsn, NULL, NULL, problem);
		else
			EmitChange(ctx, txn, route, RECORD_DELETE, change->lsn, id, pk, NULL);
	}
	RelationClose(target);
}

/*
 * An insert into cosmos_sink.resend_rows (by resync() and
 * retry_dead_letters(), before their touches; only the extension owner can
 * write it): the rest of this transaction's UPDATEs of that table are sent
 * even when they change nothing.
 */
static void
HandleResendRows(LogicalDecodingContext *ctx, Relation rel, ReorderBufferChange *change)
{
	PluginState *state = ctx->output_plugin_private;
	RowImage	row = DeformRow(rel, CompatChangeNewTuple(change));
	MemoryContext old;

	if (!row.present || RelationGetDescr(rel)->natts != 1 || row.nulls[0])
		return;
	old = MemoryContextSwitchTo(state->txn_context);
	state->txn_resend_relids = list_append_unique_oid(state->txn_resend_relids,
													  DatumGetObjectId(row.values[0]));
	MemoryContextSwitchTo(old);
}

/* Change: route lookup, then one record per change in the per-change context */
static void
PluginChange(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
			 ReorderBufferChange *change)
{
	PluginState *state = ctx->output_plugin_private;
	RouteInfo  *route = RouteCacheLookup(rel);
	MemoryContext old;

	if (!route->routed && !route->resend_deletes && !route->resend_rows)
		return;
	old = MemoryContextSwitchTo(state->context);
	if (route->resend_deletes || route->resend_rows)
	{
		if (change->action == REORDER_BUFFER_CHANGE_INSERT && route->resend_deletes)
			HandleResendDelete(ctx, txn, rel, change);
		else if (change->action == REORDER_BUFFER_CHANGE_INSERT)
			HandleResendRows(ctx, rel, change);
		MemoryContextSwitchTo(old);
		MemoryContextReset(state->context);
		return;
	}
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			HandleInsert(ctx, txn, route, rel, change);
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			HandleUpdate(ctx, txn, route, rel, change);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			HandleDelete(ctx, txn, route, rel, change);
			break;
		default:
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->context);
}

/* TRUNCATE: documents are kept; emit a notice record per routed table */
static void
PluginTruncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
			   Relation relations[], ReorderBufferChange *change)
{
	PluginState *state = ctx->output_plugin_private;
	int			i;

	for (i = 0; i < nrelations; i++)
	{
		RouteInfo  *route = RouteCacheLookup(relations[i]);

		if (!route->routed)
			continue;
		if (state->format == FORMAT_BINARY && !route->announced)
			AnnounceRoute(ctx, route);
		OutputPluginPrepareWrite(ctx, true);
		if (state->format == FORMAT_BINARY)
			RecordWriteTruncate(ctx->out, route->route_id);
		else
			WriteJsonRecord(ctx->out, txn, route, "truncate", change->lsn, NULL, NULL,
							"warning", "TRUNCATE is not forwarded: the documents in Cosmos DB are kept", false);
		OutputPluginWrite(ctx, true);
		state->txn_has_records = true;
	}
}

/*
 * Register the callbacks; deliberately no stream_* and no two-phase ones, and
 * no message callback: pg_logical_emit_message() is open to every role, so
 * nothing that arrives that way may become a write.
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	AssertVariableIsOfType(&_PG_output_plugin_init, LogicalOutputPluginInit);

	cb->startup_cb = PluginStartup;
	cb->begin_cb = PluginBegin;
	cb->change_cb = PluginChange;
	cb->truncate_cb = PluginTruncate;
	cb->commit_cb = PluginCommit;
	cb->shutdown_cb = PluginShutdown;
}
