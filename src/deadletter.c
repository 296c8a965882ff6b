/*
 * deadletter.c
 *		Parking of poison records in cosmos_sink.dead_letters. Rows are queued
 *		in memory while decoding (which must not write) and inserted between
 *		decoding rounds; only then do their transactions count them as done, so
 *		the confirmed LSN never passes a record that is neither sent nor parked.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "cosmos_sink.h"
#include "deadletter.h"
#include "record.h"
#include "subxact.h"

typedef struct DeadLetter
{
	struct DeadLetter *next;
	Oid			relid;
	XLogRecPtr	lsn;
	const char *operation;
	char	   *id;				/* NULL when unknown */
	char	   *pk;
	char	   *doc;
	int			status;			/* 0 = not sent */
	int			substatus;
	char	   *error;
	TxnAck	   *txn;
} DeadLetter;

static MemoryContext DeadLetterContext = NULL;
static DeadLetter *QueueHead = NULL;
static DeadLetter *QueueTail = NULL;
static int	Queued = 0;
static int64 TableRows = -1;	/* unretried rows at the last flush, -1: unknown */
static bool Backlogged = false;	/* the last flush left records for lack of room */

/* Set up the queue's memory; once per worker process */
void
DeadLetterInit(void)
{
	DeadLetterContext = AllocSetContextCreate(TopMemoryContext, "cosmos_sink dead letters",
											  ALLOCSET_SMALL_SIZES);
}

/* Copy of a length-delimited string, or NULL for an empty one */
static char *
CopyOrNull(const char *s, int len)
{
	return (s == NULL || len == 0) ? NULL : MemoryContextStrdup(DeadLetterContext, pnstrdup(s, len));
}

/* Queue a record for dead_letters; txn counts it done once the row is written */
void
DeadLetterAdd(Oid relid, XLogRecPtr lsn, char kind, const char *id, int id_len,
			  const char *pk, int pk_len, const char *doc, int doc_len, int status,
			  int substatus, const char *error, TxnAck *txn)
{
	DeadLetter *dl = MemoryContextAllocZero(DeadLetterContext, sizeof(DeadLetter));

	dl->relid = relid;
	dl->lsn = lsn;
	dl->operation = kind == RECORD_UPSERT ? "upsert" : kind == RECORD_DELETE ? "delete" : "error";
	dl->id = CopyOrNull(id, id_len);
	dl->pk = CopyOrNull(pk, pk_len);
	dl->doc = CopyOrNull(doc, doc_len);
	dl->status = status;
	dl->substatus = substatus;
	dl->error = MemoryContextStrdup(DeadLetterContext, error ? error : "unknown error");
	dl->txn = txn;
	if (QueueTail)
		QueueTail->next = dl;
	else
		QueueHead = dl;
	QueueTail = dl;
	Queued++;
}

/* Records waiting to be written */
int
DeadLetterQueued(void)
{
	return Queued;
}

/* s itself when it is valid in the database encoding, else a copy with '?' for non-ASCII bytes */
static const char *
ValidText(const char *s)
{
	char	   *copy;
	char	   *p;

	if (s == NULL || pg_verifymbstr(s, strlen(s), true))
		return s;
	copy = pstrdup(s);
	for (p = copy; *p; p++)
		if (IS_HIGHBIT_SET(*p))
			*p = '?';
	return copy;
}

/* Insert one row; with_document false leaves out the document and partition key */
static void
InsertRow(DeadLetter *dl, bool with_document, const char *error)
{
	Datum		values[9];
	char		nulls[9];
	Oid			types[9] = {OIDOID, LSNOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT4OID, INT4OID, TEXTOID};

	memset(nulls, ' ', sizeof(nulls));
	values[0] = ObjectIdGetDatum(dl->relid);
	values[1] = LSNGetDatum(dl->lsn);
	values[2] = CStringGetTextDatum(dl->operation);
	values[3] = dl->id ? CStringGetTextDatum(ValidText(dl->id)) : (Datum) 0;
	nulls[3] = dl->id ? ' ' : 'n';
	values[4] = (with_document && dl->pk) ? CStringGetTextDatum(dl->pk) : (Datum) 0;
	nulls[4] = (with_document && dl->pk) ? ' ' : 'n';
	values[5] = (with_document && dl->doc) ? CStringGetTextDatum(dl->doc) : (Datum) 0;
	nulls[5] = (with_document && dl->doc) ? ' ' : 'n';
	values[6] = Int32GetDatum(dl->status);
	nulls[6] = dl->status ? ' ' : 'n';
	values[7] = Int32GetDatum(dl->substatus);
	nulls[7] = dl->status ? ' ' : 'n';
	values[8] = CStringGetTextDatum(ValidText(error));
	if (SPI_execute_with_args("INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation,"
							  " doc_id, partition_key, document, http_status, sub_status, error)"
							  " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9)",
							  9, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into cosmos_sink.dead_letters");
}

/* One attempt at inserting a dead letter's row */
typedef struct InsertAttempt
{
	DeadLetter *dl;
	bool		with_document;
	const char *error;
} InsertAttempt;

/* Subtransaction step: the insert of one attempt */
static void
InsertAttemptStep(void *arg)
{
	InsertAttempt *a = arg;

	InsertRow(a->dl, a->with_document, a->error);
}

/* Try one insert in a subtransaction; false (error discarded) if it failed */
static bool
TryInsertRow(DeadLetter *dl, bool with_document, const char *error)
{
	InsertAttempt a = {dl, with_document, error};
	ErrorData  *edata = RunInSubtransaction(InsertAttemptStep, &a);

	if (edata == NULL)
		return true;
	FreeErrorData(edata);
	return false;
}

/*
 * Insert a row, falling back to one without the document (not valid jsonb),
 * then without the partition key too, then to one with only the table,
 * position and a plain message: bad input can never stop the record from
 * being parked.
 */
static void
InsertDeadLetter(DeadLetter *dl)
{
	char	   *doc = dl->doc;

	if (TryInsertRow(dl, true, dl->error))
		return;
	dl->doc = NULL;
	if (TryInsertRow(dl, true, psprintf("%s (the document is not valid jsonb; see the staging table)",
										 dl->error)))
		return;
	dl->doc = doc;
	if (TryInsertRow(dl, false, psprintf("%s (document or key is not valid jsonb; see the staging table)",
										  dl->error)))
		return;
	dl->id = NULL;
	InsertRow(dl, false, "the record could not be stored (its id or error text was refused); see the staging table at this LSN");
}

/* Rows of dead_letters not retried yet (they count against dead_letters_max) */
static int64
CountUnretried(void)
{
	bool		isnull;

	SPI_execute("SELECT count(*) FROM cosmos_sink.dead_letters WHERE retried_at IS NULL", true, 1);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Write queued records in one transaction, as many as dead_letters_max
 * allows; the rest stay queued (their transactions unconfirmed) until rows
 * are retried or deleted. Returns how many were written.
 */
int
DeadLetterFlush(void)
{
	DeadLetter *dl;
	DeadLetter *stop;
	int			written = 0;
	int64		room;

	if (QueueHead == NULL)
		return 0;
	StartTransactionCommand();
	/* the slot moves past these records once counted: their rows must be on disk first */
	if (synchronous_commit < SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		(void) set_config_option("synchronous_commit", "local", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	TableRows = CountUnretried();
	room = CosmosSinkDeadLettersMax - TableRows;
	for (dl = QueueHead; dl != NULL && written < room; dl = dl->next, written++)
		InsertDeadLetter(dl);
	stop = dl;
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	TableRows += written;

	for (dl = QueueHead; dl != stop; dl = dl->next)
		CheckpointChangeDone(dl->txn);
	QueueHead = stop;
	Queued -= written;
	Backlogged = QueueHead != NULL;
	if (QueueHead == NULL)
	{
		MemoryContextReset(DeadLetterContext);
		QueueTail = NULL;
	}
	return written;
}

/* Whether records wait for room in dead_letters (forwarding pauses meanwhile) */
bool
DeadLettersFull(char **problem)
{
	if (!Backlogged)
		return false;
	*problem = psprintf("cosmos_sink.dead_letters holds %lld rows not yet retried (cosmos_sink.dead_letters_max = %d); %d more records wait: run cosmos_sink.retry_dead_letters(), or delete rows, to continue",
						(long long) TableRows, CosmosSinkDeadLettersMax, Queued);
	return true;
}
