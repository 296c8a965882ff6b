/*
 * sweep.c
 *		The sweep of recover(): once a lost slot's table is re-sent, list the
 *		documents of its route's container (id and partition key values only),
 *		a page at a time, per physical partition key range, and hand each page
 *		to sweep_step() (install script), which deletes through the stream the
 *		documents whose rows are gone, under locks that keep every writer's
 *		commit out of the way (see the comment there).
 *
 *		Bounds: one request in flight, a page of SWEEP_PAGE_ITEMS documents per
 *		transaction, at least SWEEP_PAGE_GAP_MS between pages (RU spend), no
 *		page asked for while the worker's buffer is half full. A worker restart
 *		lists the container again from the start (the check is idempotent);
 *		a 410 (range split or gone) does the same with fresh ranges.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"
#include "decoder.h"
#include "subxact.h"
#include "sweep.h"

#define SWEEP_PAGE_ITEMS	200		/* documents per page, checked in one transaction */
#define SWEEP_PAGE_GAP_MS	100		/* least time between two pages: bounds the RU spent */
#define SWEEP_LOOK_MS		1000	/* how often to look for a sweep while none runs */
#define SWEEP_MAX_FAILURES	8		/* failed requests or pages in a row before it stops */
#define SWEEP_MAX_BACKOFF_MS 30000
#define SWEEP_STEP_TIMEOUT_MS 30000	/* longest a page's check may hold up forwarding */
#define SWEEP_LOCK_TIMEOUT	"5s"	/* longest it waits for running writers */

typedef enum SweepPhase
{
	SWEEP_IDLE,					/* no sweep running */
	SWEEP_NEED_RANGES,			/* the partition key ranges are to be (re)read */
	SWEEP_LISTING,				/* the next page of the current range is to be asked for */
	SWEEP_WAITING,				/* a request is in flight */
	SWEEP_PAGE,					/* a page came and is to be checked */
	SWEEP_FAILING				/* it failed for good: to be recorded (needs SQL) */
} SweepPhase;

/* The running sweep: one container, listed range by range */
typedef struct Sweep
{
	SweepPhase	phase;
	MemoryContext memory;		/* the sweep's route; reset when the sweep ends */
	MemoryContext ranges_memory;	/* the ranges; reset when they are read again */
	MemoryContext page_memory;	/* the page received, its request; reset after each */
	Oid			relid;			/* the table whose resyncs row tracks the sweep */
	char	   *table_name;
	SinkRoute	target;			/* path, resource_link and partition key columns */
	CosmosPkRange *ranges;
	int			nranges;
	int			range;			/* index of the range being listed */
	char		continuation[HTTP_MAX_CONTINUATION + 1];	/* next page of that range; "" for its first */
	CosmosListedDoc *docs;		/* the page received */
	int			ndocs;
	char		page_continuation[HTTP_MAX_CONTINUATION + 1];	/* what the page said comes next; "": range done */
	int			failures;		/* in a row */
	char	   *failure;		/* why it failed for good (SWEEP_FAILING) */
	TimestampTz next_at;		/* nothing before this (pacing, backoff) */
} Sweep;

static Sweep S = {.phase = SWEEP_IDLE};
static char SweepOwnerTag;		/* http->owner of every request of the sweep */

/* Whether a finished request is the sweep's (the rest belong to the batcher) */
bool
SweepOwns(const HttpRequest *http)
{
	return http->owner == &SweepOwnerTag;
}

/* Wait ms before the next request or page */
static void
SweepWait(long ms)
{
	S.next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

/* Jittered exponential backoff after the failures in a row */
static long
SweepBackoffMs(void)
{
	long		ms = Min(500L << Min(S.failures, 10), (long) SWEEP_MAX_BACKOFF_MS);

	return ms / 2 + (long) (pg_prng_double(&pg_global_prng_state) * (ms / 2));
}

/* Set the sweep's state in its resyncs row (unless recover() asked again meanwhile), in a transaction of its own */
static void
SweepRecord(const char *state)
{
	DecoderBeforeSql();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_execute_with_args("UPDATE " COSMOS_SINK_SCHEMA ".resyncs SET sweep = $2"
						  " WHERE staging_table = $1 AND sweep = 'running'",
						  2, (Oid[]) {OIDOID, TEXTOID},
						  (Datum[]) {ObjectIdGetDatum(S.relid), CStringGetTextDatum(state)},
						  NULL, false, 0);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* Forget the running sweep and its memory */
static void
SweepForget(void)
{
	if (S.target.path)
		pfree(S.target.path);
	if (S.target.resource_link)
		pfree(S.target.resource_link);
	MemoryContextReset(S.memory);
	MemoryContextReset(S.ranges_memory);
	MemoryContextReset(S.page_memory);
	memset(&S.target, 0, sizeof(S.target));
	S.phase = SWEEP_IDLE;
	S.ranges = NULL;
	S.continuation[0] = '\0';
	S.docs = NULL;
	S.page_continuation[0] = '\0';
	S.failure = NULL;
	S.table_name = NULL;
	S.failures = 0;
}

/* The sweep ends for good with a reason (never retried by itself): a WARNING and the note */
static void
SweepFailed(const char *reason)
{
	ereport(WARNING,
			(errmsg("cosmos_sink: sweep of %s stopped: %s", S.table_name, reason),
			 errhint("Documents whose rows are gone may remain; fix the cause, then "
					 "UPDATE cosmos_sink.resyncs SET sweep = 'pending' WHERE staging_table = '%s'::regclass.",
					 S.table_name)));
	SweepRecord(psprintf("failed: %s", reason));
	SweepForget();
}

/* Every range listed: the sweep is done */
static void
SweepDone(void)
{
	ereport(LOG, (errmsg("cosmos_sink: sweep of %s done", S.table_name)));
	SweepRecord("done");
	SweepForget();
}

/* Start the listing from the first range, with fresh ranges (a start, a restart, a 410) */
static void
SweepRestart(void)
{
	S.phase = SWEEP_NEED_RANGES;
	S.range = 0;
	S.continuation[0] = '\0';
	S.ranges = NULL;
	S.nranges = 0;
	MemoryContextReset(S.ranges_memory);
}

/* Copy the text of column col of the first row into the sweep's memory (NULL stays NULL) */
static char *
SweepValue(int col)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return value ? MemoryContextStrdup(S.memory, value) : NULL;
}

/*
 * Find the oldest sweep asked for (its table re-sent), mark it running and
 * load its route; a sweep whose route is gone is closed with that note.
 */
static bool
SweepLoad(void)
{
	bool		isnull;
	bool		found = false;

	if (SPI_execute("SELECT to_regclass('" COSMOS_SINK_SCHEMA ".resyncs') IS NOT NULL", true, 1) != SPI_OK_SELECT ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return false;			/* nothing to do before CREATE EXTENSION */
	SPI_execute("UPDATE " COSMOS_SINK_SCHEMA ".resyncs s SET sweep = 'failed: route removed'"
				" WHERE s.sweep IN ('pending', 'running') AND NOT EXISTS (SELECT 1 FROM "
				COSMOS_SINK_SCHEMA ".routes r WHERE r.staging_table = s.staging_table)", false, 0);
	if (SPI_execute("SELECT s.staging_table::oid, s.staging_table::text, r.cosmos_database, r.container,"
					" cardinality(r.partition_key), r.partition_key[1], r.partition_key[2], r.partition_key[3]"
					" FROM " COSMOS_SINK_SCHEMA ".resyncs s JOIN " COSMOS_SINK_SCHEMA ".routes r"
					" ON r.staging_table = s.staging_table"
					" WHERE s.sweep IN ('pending', 'running') AND s.finished_at IS NOT NULL"
					" ORDER BY s.requested_at LIMIT 1", false, 1) != SPI_OK_SELECT ||
		SPI_processed == 0)
		return false;
	S.relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	S.table_name = SweepValue(2);
	S.target.cosmos_database = SweepValue(3);
	S.target.container = SweepValue(4);
	S.target.npk = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	found = !isnull && S.target.npk >= 1 && S.target.npk <= COSMOS_MAX_PK_PATHS;
	for (int i = 0; found && i < S.target.npk; i++)
	{
		char	   *column = SweepValue(6 + i);

		found = column != NULL;
		if (found)
			strlcpy(S.target.pk_columns[i], column, NAMEDATALEN);
	}
	/* counts start again with the listing; the deletes asked for stay counted */
	SPI_execute_with_args(found ?
						  "UPDATE " COSMOS_SINK_SCHEMA ".resyncs SET sweep = 'running', docs_checked = 0"
						  " WHERE staging_table = $1" :
						  "UPDATE " COSMOS_SINK_SCHEMA ".resyncs SET sweep = 'failed: the route has no partition key'"
						  " WHERE staging_table = $1",
						  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(S.relid)}, NULL, false, 0);
	return found;
}

/* Look for a sweep to run (in a transaction of its own) */
static void
SweepLook(void)
{
	bool		found;

	DecoderBeforeSql();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	found = SweepLoad();
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	if (!found)
	{
		SweepForget();
		return;
	}
	CosmosRouteUrls(&S.target);
	ereport(LOG, (errmsg("cosmos_sink: sweeping %s/%s for documents whose rows are gone (%s)",
						 S.target.cosmos_database, S.target.container, S.table_name)));
	SweepRestart();
}

/* Send one request of the sweep */
static void
SweepSubmit(HttpRequest *http)
{
	http->owner = &SweepOwnerTag;
	HttpSubmit(http);
	S.phase = SWEEP_WAITING;
}

/* Ask for the next page of the current range */
static void
SweepAskPage(void)
{
	StringInfoData body;
	const char *columns[COSMOS_MAX_PK_PATHS];
	MemoryContext old;

	/* nothing of an earlier page or request is left: the memory holds one at a time */
	MemoryContextReset(S.page_memory);
	old = MemoryContextSwitchTo(S.page_memory);
	for (int i = 0; i < S.target.npk; i++)
		columns[i] = S.target.pk_columns[i];
	initStringInfo(&body);
	CosmosListQueryBody(&body, columns, S.target.npk);
	SweepSubmit(CosmosQueryRequest(&S.target, body.data, body.len, S.ranges[S.range].id,
								   S.continuation[0] ? S.continuation : NULL, SWEEP_PAGE_ITEMS));
	MemoryContextSwitchTo(old);
}

/* A continuation token must be one printable header line */
static bool
ContinuationUsable(const char *token)
{
	for (const char *p = token; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

/* A page came: keep its documents and what comes next, or say why it is unusable */
static char *
SweepTakePage(HttpRequest *http)
{
	char	   *problem = NULL;

	if (http->continuation_too_long ||
		(http->continuation != NULL && !ContinuationUsable(http->continuation)))
		return pstrdup("the page's continuation token is unusable");
	if (!CosmosParseListPage(http->response ? http->response : "", http->response_len,
							 S.target.npk, SWEEP_PAGE_ITEMS, &S.docs, &S.ndocs, &problem))
		return problem;
	strlcpy(S.page_continuation, http->continuation ? http->continuation : "",
			sizeof(S.page_continuation));
	return NULL;
}

/* The ranges came: list the first one */
static char *
SweepTakeRanges(HttpRequest *http)
{
	char	   *problem = NULL;
	MemoryContext old = MemoryContextSwitchTo(S.ranges_memory);
	bool		parsed = CosmosParsePkRanges(http->response ? http->response : "",
											 http->response_len, &S.ranges, &S.nranges,
											 &problem);

	MemoryContextSwitchTo(old);
	if (!parsed)
		return problem;
	if (S.nranges == 0)
		return pstrdup("the container has no partition key ranges");
	S.range = 0;
	S.continuation[0] = '\0';
	return NULL;
}

/* Fail for good from the completion loop: recorded by the next SweepStep (SQL) */
static void
SweepGiveUp(char *reason)
{
	S.failure = reason;
	S.phase = SWEEP_FAILING;
}

/* A request failed: wait out a 429, restart on a 410, back off or give up otherwise */
static void
SweepRequestFailed(HttpRequest *http, SweepPhase retry_phase)
{
	CosmosOutcome outcome = CosmosClassify((int) http->status, http->substatus,
										   COSMOS_OP_UPSERT, true);

	S.phase = retry_phase;
	if (outcome == COSMOS_THROTTLED)
	{
		SweepWait(Max(http->retry_after_ms, 5));
		return;
	}
	if (++S.failures >= SWEEP_MAX_FAILURES ||
		(outcome != COSMOS_TRANSIENT && outcome != COSMOS_REROUTE &&
		 outcome != COSMOS_REFRESH_CONTAINER && http->status != 410))
	{
		SweepGiveUp(CosmosRequestProblem(http));
		return;
	}
	ereport(LOG, (errmsg("cosmos_sink: sweep of %s: request failed, trying again: %s",
						 S.table_name, CosmosRequestProblem(http))));
	if (http->status == 410)
		SweepRestart();			/* split or gone: list again with fresh ranges */
	SweepWait(SweepBackoffMs());
}

/*
 * A request of the sweep finished (called from the worker's completion loop,
 * maybe from inside decoding: no SQL here, only parsing into the sweep's memory).
 */
void
SweepComplete(HttpRequest *http)
{
	MemoryContext old = MemoryContextSwitchTo(S.page_memory);
	bool		ranges = S.ranges == NULL;
	char	   *problem = NULL;

	if (S.phase != SWEEP_WAITING)
		;						/* the sweep ended meanwhile */
	else if (http->status != 200)
		SweepRequestFailed(http, ranges ? SWEEP_NEED_RANGES : SWEEP_LISTING);
	else if ((problem = ranges ? SweepTakeRanges(http) : SweepTakePage(http)) != NULL)
	{
		S.phase = ranges ? SWEEP_NEED_RANGES : SWEEP_LISTING;
		if (++S.failures >= SWEEP_MAX_FAILURES)
			SweepGiveUp(psprintf("unreadable answer: %s", problem));
		else
			SweepWait(SweepBackoffMs());
	}
	else
		S.phase = ranges ? SWEEP_LISTING : SWEEP_PAGE;
	HttpRequestFree(http);
	MemoryContextSwitchTo(old);
}

/* A text[] of the ids or keys of the page's usable documents */
static Datum
PageArray(bool keys)
{
	Datum	   *items = palloc(sizeof(Datum) * Max(S.ndocs, 1));
	int			n = 0;

	for (int i = 0; i < S.ndocs; i++)
		if (S.docs[i].problem == NULL)
			items[n++] = CStringGetTextDatum(keys ? S.docs[i].pk_json : S.docs[i].id);
	return PointerGetDatum(construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Subtransaction step: check the page and ask for the deletes, bounded in time and lock waits */
static void
SweepPageStep(void *arg)
{
	(void) set_config_option("lock_timeout", SWEEP_LOCK_TIMEOUT, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	enable_timeout_after(STATEMENT_TIMEOUT, SWEEP_STEP_TIMEOUT_MS);
	SPI_execute_with_args("SELECT " COSMOS_SINK_SCHEMA ".sweep_step($1::regclass, $2, $3, $4)", 4,
						  (Oid[]) {OIDOID, TEXTARRAYOID, TEXTARRAYOID, INT4OID},
						  (Datum[]) {ObjectIdGetDatum(S.relid), PageArray(false), PageArray(true),
						  Int32GetDatum(S.ndocs)},
						  NULL, false, 1);
	disable_timeout(STATEMENT_TIMEOUT, false);
	/* the page is done: a timer that fired meanwhile must not cancel what follows */
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
	/* recover() again (pending): list from the start; failed or gone: stop */
	SPI_execute_with_args("SELECT sweep FROM " COSMOS_SINK_SCHEMA ".resyncs WHERE staging_table = $1",
						  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(S.relid)}, NULL, false, 1);
	*(char **) arg = SPI_processed > 0 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	if (*(char **) arg != NULL && strcmp(*(char **) arg, "pending") == 0)
		SPI_execute_with_args("UPDATE " COSMOS_SINK_SCHEMA ".resyncs SET sweep = 'running', docs_checked = 0"
							  " WHERE staging_table = $1",
							  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(S.relid)}, NULL, false, 0);
}

/* After a page: the next one of this range, the next range, or the end */
static void
SweepAdvance(void)
{
	S.failures = 0;
	strlcpy(S.continuation, S.page_continuation, sizeof(S.continuation));
	S.page_continuation[0] = '\0';
	S.docs = NULL;
	S.ndocs = 0;
	MemoryContextReset(S.page_memory);	/* memory holds one page at a time */
	S.phase = SWEEP_LISTING;
	if (S.continuation[0] == '\0' && ++S.range >= S.nranges)
		SweepDone();
	else
		SweepWait(SWEEP_PAGE_GAP_MS);
}

/* Check the page received and ask for its deletes, in a transaction of its own */
static void
SweepApplyPage(void)
{
	char	   *state = NULL;
	ErrorData  *edata;

	DecoderBeforeSql();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	edata = RunInSubtransaction(SweepPageStep, &state);
	if (edata != NULL)
		disable_timeout(STATEMENT_TIMEOUT, false);
	else if (state != NULL)
		state = MemoryContextStrdup(S.page_memory, state);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	if (edata != NULL)
	{
		if (ErrorIsTransient(edata->sqlerrcode) && ++S.failures < SWEEP_MAX_FAILURES)
		{
			ereport(LOG, (errmsg("cosmos_sink: sweep of %s: page failed, trying again: %s",
								 S.table_name, edata->message)));
			SweepWait(SweepBackoffMs());
		}
		else
			SweepFailed(edata->message);
		FreeErrorData(edata);
	}
	else if (state == NULL || (strcmp(state, "running") != 0 && strcmp(state, "pending") != 0))
		SweepForget();			/* closed meanwhile (route removed, keys disagree) */
	else if (strcmp(state, "pending") == 0)
		SweepRestart();			/* recover() asked again: list everything again */
	else
		SweepAdvance();
}

/*
 * One step of the sweep, from the worker's main loop while it forwards:
 * look for a sweep, read the ranges, ask for a page (only with room in the
 * buffer, paced), or check the page received. Never waits.
 */
void
SweepStep(bool room)
{
	static TimestampTz next_look = 0;

	if (S.memory == NULL)
	{
		S.memory = AllocSetContextCreate(TopMemoryContext, "cosmos_sink sweep",
										 ALLOCSET_SMALL_SIZES);
		/* siblings, not children: resetting one leaves the others */
		S.ranges_memory = AllocSetContextCreate(TopMemoryContext, "cosmos_sink sweep ranges",
												ALLOCSET_SMALL_SIZES);
		S.page_memory = AllocSetContextCreate(TopMemoryContext, "cosmos_sink sweep page",
											  ALLOCSET_DEFAULT_SIZES);
	}
	if (S.phase == SWEEP_WAITING ||
		(S.phase != SWEEP_FAILING && GetCurrentTimestamp() < S.next_at))
		return;
	switch (S.phase)
	{
		case SWEEP_IDLE:
			if (GetCurrentTimestamp() < next_look)
				return;
			next_look = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SWEEP_LOOK_MS);
			SweepLook();
			break;
		case SWEEP_NEED_RANGES:
			SweepSubmit(CosmosPkRangesRequest(&S.target));
			break;
		case SWEEP_LISTING:
			if (room)
				SweepAskPage();
			break;
		case SWEEP_PAGE:
			SweepApplyPage();
			break;
		case SWEEP_FAILING:
			SweepFailed(S.failure);
			break;
		case SWEEP_WAITING:
			break;
	}
}
