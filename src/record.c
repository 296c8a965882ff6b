/*
 * record.c
 *		Encoding and decoding of the compact binary change records that the
 *		output plugin hands to the worker, and decode_record(bytea) to show one
 *		as JSON when peeking a slot with format 'binary'.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "record.h"

PG_FUNCTION_INFO_V1(decode_record);

/* Append a length-prefixed string (NULL is written as empty) */
static void
WriteString(StringInfo out, const char *s)
{
	int32		len = s ? strlen(s) : 0;

	pq_sendint32(out, len);
	appendBinaryStringInfo(out, s ? s : "", len);
}

/* Write an upsert, delete or error record */
void
RecordWriteChange(StringInfo out, char kind, int32 route_id, const char *id,
				  const char *pk, const char *body)
{
	pq_sendbyte(out, kind);
	pq_sendint32(out, route_id);
	WriteString(out, id);
	WriteString(out, pk);
	WriteString(out, body);
}

/*
 * Start an upsert record whose body the caller appends straight after (no
 * intermediate copy of the document); returns what RecordEndBody needs
 */
int
RecordBeginBody(StringInfo out, char kind, int32 route_id, const char *id, const char *pk)
{
	pq_sendbyte(out, kind);
	pq_sendint32(out, route_id);
	WriteString(out, id);
	WriteString(out, pk);
	pq_sendint32(out, 0);		/* body length, set by RecordEndBody */
	return out->len;
}

/* Set the body length of a record started by RecordBeginBody */
void
RecordEndBody(StringInfo out, int body_start)
{
	uint32		len = pg_hton32((uint32) (out->len - body_start));

	memcpy(out->data + body_start - sizeof(uint32), &len, sizeof(uint32));
}

/* Write the end of a transaction: the LSN that may be confirmed once all is acked */
void
RecordWriteCommit(StringInfo out, XLogRecPtr end_lsn, TimestampTz commit_time,
				  TransactionId xid)
{
	pq_sendbyte(out, RECORD_COMMIT);
	pq_sendint64(out, end_lsn);
	pq_sendint64(out, commit_time);
	pq_sendint32(out, xid);
}

/* Write a truncate notice for a routed table */
void
RecordWriteTruncate(StringInfo out, int32 route_id)
{
	pq_sendbyte(out, RECORD_TRUNCATE);
	pq_sendint32(out, route_id);
}

/* Write the notice of an unchanged row's UPDATE, which the worker only counts */
void
RecordWriteSkipped(StringInfo out, int32 route_id)
{
	pq_sendbyte(out, RECORD_SKIPPED);
	pq_sendint32(out, route_id);
}

/* Write a route announcement: what the worker needs to send its changes */
void
RecordWriteRoute(StringInfo out, int32 route_id, Oid relid, const char *table_name,
				 const char *cosmos_database, const char *container,
				 const char *pk_columns)
{
	pq_sendbyte(out, RECORD_ROUTE);
	pq_sendint32(out, route_id);
	pq_sendint32(out, relid);
	WriteString(out, table_name);
	WriteString(out, cosmos_database);
	WriteString(out, container);
	WriteString(out, pk_columns);
}

/* Bounds-checked reader over a record buffer */
typedef struct Reader
{
	const unsigned char *p;
	const unsigned char *end;
	bool		ok;
} Reader;

static uint32
ReadUint32(Reader *r)
{
	uint32		v;

	if (r->end - r->p < 4)
	{
		r->ok = false;
		return 0;
	}
	v = ((uint32) r->p[0] << 24) | ((uint32) r->p[1] << 16) | ((uint32) r->p[2] << 8) | r->p[3];
	r->p += 4;
	return v;
}

static uint64
ReadUint64(Reader *r)
{
	uint64		hi = ReadUint32(r);

	return (hi << 32) | ReadUint32(r);
}

static const char *
ReadString(Reader *r, int32 *len)
{
	const char *s;

	*len = (int32) ReadUint32(r);
	if (!r->ok || *len < 0 || r->end - r->p < *len)
	{
		r->ok = false;
		*len = 0;
		return "";
	}
	s = (const char *) r->p;
	r->p += *len;
	return s;
}

/* Parse one binary record; false if it is malformed */
bool
RecordParse(const char *data, Size len, ChangeRecord *rec)
{
	Reader		r = {(const unsigned char *) data, (const unsigned char *) data + len, true};

	memset(rec, 0, sizeof(ChangeRecord));
	if (len < 1)
		return false;
	rec->kind = *r.p++;
	switch (rec->kind)
	{
		case RECORD_UPSERT:
		case RECORD_DELETE:
		case RECORD_ERROR:
			rec->route_id = (int32) ReadUint32(&r);
			rec->id = ReadString(&r, &rec->id_len);
			rec->pk = ReadString(&r, &rec->pk_len);
			rec->body = ReadString(&r, &rec->body_len);
			break;
		case RECORD_TRUNCATE:
		case RECORD_SKIPPED:
			rec->route_id = (int32) ReadUint32(&r);
			break;
		case RECORD_ROUTE:
			rec->route_id = (int32) ReadUint32(&r);
			rec->relid = ReadUint32(&r);
			rec->table_name = ReadString(&r, &rec->table_name_len);
			rec->cosmos_database = ReadString(&r, &rec->cosmos_database_len);
			rec->container = ReadString(&r, &rec->container_len);
			rec->pk_columns = ReadString(&r, &rec->pk_columns_len);
			break;
		case RECORD_COMMIT:
			rec->end_lsn = ReadUint64(&r);
			rec->commit_time = (TimestampTz) ReadUint64(&r);
			rec->xid = ReadUint32(&r);
			break;
		default:
			return false;
	}
	return r.ok && r.p == r.end;
}

/* Append a length-delimited string as a JSON string */
static void
AppendJsonString(StringInfo out, const char *s, int32 len)
{
	char	   *copy = pnstrdup(s, len);

	escape_json(out, copy);
	pfree(copy);
}

/* Render a parsed record as JSON (for decode_record and debugging) */
void
RecordAppendJson(StringInfo out, const ChangeRecord *rec)
{
	appendStringInfo(out, "{\"kind\":\"%c\"", rec->kind);
	if (rec->kind == RECORD_COMMIT)
	{
		char		buf[MAXDATELEN + 1];

		appendStringInfo(out, ",\"end_lsn\":\"%X/%X\",\"xid\":%u,\"commit_time\":\"%s\"}",
						 LSN_FORMAT_ARGS(rec->end_lsn), rec->xid,
						 JsonEncodeDateTime(buf, TimestampTzGetDatum(rec->commit_time),
											TIMESTAMPTZOID, NULL));
		return;
	}
	appendStringInfo(out, ",\"route_id\":%d", rec->route_id);
	if (rec->kind == RECORD_ROUTE)
	{
		appendStringInfoString(out, ",\"table\":");
		AppendJsonString(out, rec->table_name, rec->table_name_len);
		appendStringInfoString(out, ",\"cosmos_database\":");
		AppendJsonString(out, rec->cosmos_database, rec->cosmos_database_len);
		appendStringInfoString(out, ",\"container\":");
		AppendJsonString(out, rec->container, rec->container_len);
		appendStringInfoString(out, ",\"partition_key\":");
		appendBinaryStringInfo(out, rec->pk_columns, rec->pk_columns_len);
		appendStringInfoChar(out, '}');
		return;
	}
	if (rec->kind == RECORD_TRUNCATE || rec->kind == RECORD_SKIPPED)
	{
		appendStringInfoChar(out, '}');
		return;
	}
	appendStringInfoString(out, ",\"id\":");
	AppendJsonString(out, rec->id, rec->id_len);
	appendStringInfoString(out, ",\"partition_key\":");
	if (rec->pk_len > 0)
		appendBinaryStringInfo(out, rec->pk, rec->pk_len);
	else
		appendStringInfoString(out, "null");
	if (rec->kind == RECORD_UPSERT)
	{
		appendStringInfoString(out, ",\"document\":");
		appendBinaryStringInfo(out, rec->body, rec->body_len);
	}
	else if (rec->kind == RECORD_ERROR)
	{
		appendStringInfoString(out, ",\"error\":");
		AppendJsonString(out, rec->body, rec->body_len);
	}
	appendStringInfoChar(out, '}');
}

/* decode_record(bytea) returns jsonb: one binary record as JSON */
Datum
decode_record(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	ChangeRecord rec;
	StringInfoData out;

	if (!RecordParse(VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &rec))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("not a cosmos_sink change record"),
				 errhint("Pass the data column of pg_logical_slot_peek_binary_changes(..., 'format', 'binary').")));
	initStringInfo(&out);
	RecordAppendJson(&out, &rec);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
