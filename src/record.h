/*
 * record.h
 *		Change records: what the output plugin emits for the worker (compact
 *		binary) and for people and tools (format=json, one object per change).
 */
#ifndef COSMOS_SINK_RECORD_H
#define COSMOS_SINK_RECORD_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

/* Record kinds (first byte of a binary record) */
#define RECORD_UPSERT	'U'
#define RECORD_DELETE	'D'
#define RECORD_ERROR	'E'		/* a change that cannot become a document */
#define RECORD_TRUNCATE 'T'
#define RECORD_COMMIT	'C'		/* end of a transaction that had records */
#define RECORD_ROUTE	'R'		/* a route as of this point, before its first change */
#define RECORD_SKIPPED	'S'		/* an UPDATE that changed nothing: counted, not sent */

/* A parsed binary record; strings point into the record buffer */
typedef struct ChangeRecord
{
	char		kind;
	int32		route_id;		/* changes, errors and truncates */
	const char *id;				/* document id (may be empty for errors) */
	int32		id_len;
	const char *pk;				/* partition key value as a JSON array */
	int32		pk_len;
	const char *body;			/* upsert: document; error: message */
	int32		body_len;
	XLogRecPtr	end_lsn;		/* commit: position to confirm once acked */
	TimestampTz commit_time;	/* commit */
	TransactionId xid;			/* commit */
	Oid			relid;			/* route: the staging table */
	const char *table_name;		/* route: schema.table */
	int32		table_name_len;
	const char *cosmos_database;	/* route */
	int32		cosmos_database_len;
	const char *container;		/* route */
	int32		container_len;
	const char *pk_columns;		/* route: partition key columns, a JSON array */
	int32		pk_columns_len;
} ChangeRecord;

extern void RecordWriteChange(StringInfo out, char kind, int32 route_id,
							  const char *id, const char *pk, const char *body);
extern int	RecordBeginBody(StringInfo out, char kind, int32 route_id, const char *id,
							const char *pk);
extern void RecordEndBody(StringInfo out, int body_start);
extern void RecordWriteCommit(StringInfo out, XLogRecPtr end_lsn,
							  TimestampTz commit_time, TransactionId xid);
extern void RecordWriteTruncate(StringInfo out, int32 route_id);
extern void RecordWriteSkipped(StringInfo out, int32 route_id);
extern void RecordWriteRoute(StringInfo out, int32 route_id, Oid relid,
							 const char *table_name, const char *cosmos_database,
							 const char *container, const char *pk_columns);
extern bool RecordParse(const char *data, Size len, ChangeRecord *rec);
extern void RecordAppendJson(StringInfo out, const ChangeRecord *rec);

#endif							/* COSMOS_SINK_RECORD_H */
