/*
 * worker.c
 *		The background worker: consumes the slot, sends batches to Cosmos DB,
 *		and advances the slot's confirmed LSN only past transactions whose
 *		every change Cosmos DB acknowledged (or that were parked). Problems it
 *		can wait out (configuration, credentials, Cosmos errors) put it in
 *		state "error" with a clear last_error; it retries on its own.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "checkpoint.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"
#include "deadletter.h"
#include "decoder.h"
#include "http.h"
#include "slot_guard.h"
#include "status.h"
#include "subxact.h"
#include "sweep.h"

#define WORKER_RETRY_MS		5000	/* after a configuration problem */
#define STANDBY_POLL_MS		500		/* how often a standby's worker looks for a promotion */
#define SLOT_SAVE_MS		1000	/* how often a moved confirmed LSN is saved (bounds replay after a crash) */
#define DECODE_SLICE_MS		50		/* longest decoding stretch between sends */
#define MAX_DONE			64
#define RESYNC_CHUNK_ROWS	1000	/* rows touched per backfill transaction */
#define RESYNC_CHUNK_TIMEOUT_MS 30000	/* longest a chunk may hold up forwarding */
#define RESYNC_LOCK_TIMEOUT	"5s"	/* longest a chunk waits for a row lock */
#define RESYNC_MAX_RETRIES	5		/* transient failures in a row before it stops */

static int	ResyncFailures = 0;		/* transient failures of the running backfill in a row */
static TimestampTz ResyncRetryAt = 0;	/* no chunk before this (backoff) */

PGDLLEXPORT void CosmosSinkWorkerMain(Datum arg);

static bool ClientReady = false;
static TimestampTz NextConfigAttempt = 0;
static TimestampTz NextDecoderAttempt = 0;
static bool AwaitingFirstRoute = false;	/* no slot: no route was ever added */
static TimestampTz LastSlotSave = 0;
static XLogRecPtr LastSavedLsn = InvalidXLogRecPtr;
static MemoryContext LoopContext = NULL;
static MemoryContext PumpContext = NULL;	/* sending from inside decoding */

/*
 * cosmos_sink.buffer_size bounds the worker's memory: half holds changes
 * decoded but not yet acknowledged, half is the reorder buffer (see
 * ApplyDecodingMemory). This is the first half.
 */
static Size
BufferBytes(void)
{
	return (Size) CosmosSinkBufferSizeKb * 1024 / 2;
}

/*
 * Give the reorder buffer the other half of cosmos_sink.buffer_size, in
 * place of logical_decoding_work_mem (for this process only): a bigger
 * transaction spills to disk, as it would in a walsender.
 */
static void
ApplyDecodingMemory(void)
{
	char		value[32];

	snprintf(value, sizeof(value), "%d", Max(CosmosSinkBufferSizeKb / 2, 64));
	SetConfigOption("logical_decoding_work_mem", value, PGC_USERSET, PGC_S_OVERRIDE);
}

/* Register the worker; called from _PG_init under shared_preload_libraries */
void
WorkerRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;	/* on a standby too: state standby */
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "cosmos_sink");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "CosmosSinkWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "cosmos_sink worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "cosmos_sink worker");
	RegisterBackgroundWorker(&worker);
}

/* At exit: say so in shared memory, release curl (process-local only) */
static void
WorkerExit(int code, Datum arg)
{
	SpinLockAcquire(&CosmosSinkState->mutex);
	CosmosSinkState->worker_pid = 0;
	CosmosSinkState->worker_latch = NULL;
	CosmosSinkState->state = WORKER_STOPPED;
	CosmosSinkState->in_flight = 0;
	SpinLockRelease(&CosmosSinkState->mutex);
	HttpShutdown();
}

/* Enter an error state with a message, logged once per change of message */
static void
WorkerProblem(const char *problem)
{
	bool		same;

	SpinLockAcquire(&CosmosSinkState->mutex);
	same = strncmp(CosmosSinkState->last_error, problem, STATUS_ERROR_LEN - 1) == 0;
	SpinLockRelease(&CosmosSinkState->mutex);
	if (!same)
		ereport(LOG, (errmsg("cosmos_sink: %s", problem)));
	StatusSetError("%s", problem);
	StatusSetState(WORKER_ERROR);
}

/* (Re)load endpoint and credentials; on failure retry a little later */
static void
ConfigureClient(void)
{
	char	   *problem = NULL;

	ClientReady = CosmosClientConfigure(&problem);
	if (!ClientReady)
	{
		WorkerProblem(problem);
		NextConfigAttempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), WORKER_RETRY_MS);
	}
	else
		StatusClearError();
}

/* Say (WARNING and last_error) what of the failover setup is missing, once per reason */
static void
CheckFailoverSetup(void)
{
	static char *said = NULL;
	char	   *problem = SlotGuardFailoverProblem();

	if (problem == NULL || (said != NULL && strcmp(said, problem) == 0))
		return;
	ereport(WARNING, (errmsg("cosmos_sink: %s", problem)));
	StatusSetError("%s", problem);
	if (said)
		pfree(said);
	said = MemoryContextStrdup(TopMemoryContext, problem);
}

/* Apply a reload: settings, then the key file (it may have been fixed) */
static void
ReloadConfig(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	ApplyDecodingMemory();
	ConfigureClient();
	if (DecoderActive())
		CheckFailoverSetup();
}

/*
 * Routes whose container fails may have been removed since: park their
 * changes (the worker learns of removals only here, the stream says nothing).
 */
static void
ParkRemovedRoutes(void)
{
	static TimestampTz last_check = 0;
	List	   *failing = BatchFailingRoutes();
	ListCell   *lc;

	if (failing == NIL || !TimestampDifferenceExceeds(last_check, GetCurrentTimestamp(), WORKER_RETRY_MS))
		return;
	last_check = GetCurrentTimestamp();
	DecoderBeforeSql();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, failing)
	{
		bool		exists;

		SPI_execute_with_args("SELECT 1 FROM cosmos_sink.routes WHERE route_id = $1", 1,
							  (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(lfirst_int(lc))},
							  NULL, true, 1);
		exists = SPI_processed > 0;
		if (!exists)
			BatchParkRoute(lfirst_int(lc));
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* Write parked records; when dead_letters is full, pause and say why */
static void
FlushDeadLetters(void)
{
	static TimestampTz last_full_attempt = 0;
	char	   *problem = NULL;

	if (DeadLettersFull(&problem) &&
		!TimestampDifferenceExceeds(last_full_attempt, GetCurrentTimestamp(), WORKER_RETRY_MS))
		return;
	DecoderBeforeSql();
	DeadLetterFlush();
	if (DeadLettersFull(&problem))
	{
		last_full_attempt = GetCurrentTimestamp();
		WorkerProblem(problem);
	}
}

/*
 * Mark the running backfill failed with the reason (a trigger or policy of
 * the table's owner refused the touch): it stops, the stream goes on.
 */
static void
ResyncFailed(const char *message)
{
	ereport(WARNING,
			(errmsg("cosmos_sink: resync stopped: %s", message),
			 errhint("Fix the cause, then call cosmos_sink.resync() again.")));
	SPI_execute_with_args("UPDATE cosmos_sink.resyncs SET finished_at = now(), note = 'failed: ' || $1"
						  " WHERE staging_table = (SELECT staging_table FROM cosmos_sink.resyncs"
						  " WHERE finished_at IS NULL ORDER BY requested_at LIMIT 1)",
						  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(message)},
						  NULL, false, 0);
}

/*
 * A chunk failed: a transient error is tried again after a backoff (up to
 * RESYNC_MAX_RETRIES in a row), any other stops the backfill with the reason.
 */
static void
ResyncChunkFailed(ErrorData *edata)
{
	if (ErrorIsTransient(edata->sqlerrcode) && ++ResyncFailures < RESYNC_MAX_RETRIES)
	{
		long		backoff = Min(1000L << ResyncFailures, 30000L);

		ereport(LOG,
				(errmsg("cosmos_sink: resync chunk failed, trying again in %ld ms: %s",
						backoff, edata->message)));
		ResyncRetryAt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff);
		return;
	}
	ResyncFailures = 0;
	ResyncFailed(edata->message);
}

/* Subtransaction step: touch the next chunk, bounded; *(bool *) arg says whether one ran */
static void
ResyncChunkStep(void *arg)
{
	bool		isnull = true;

	(void) set_config_option("lock_timeout", RESYNC_LOCK_TIMEOUT, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	enable_timeout_after(STATEMENT_TIMEOUT, RESYNC_CHUNK_TIMEOUT_MS);
	if (SPI_execute("SELECT cosmos_sink.resync_step(staging_table, " CppAsString2(RESYNC_CHUNK_ROWS) ")"
					" FROM cosmos_sink.resyncs WHERE finished_at IS NULL ORDER BY requested_at LIMIT 1",
					false, 1) == SPI_OK_SELECT && SPI_processed > 0)
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	disable_timeout(STATEMENT_TIMEOUT, false);
	/* the chunk finished: a timer that fired meanwhile must not cancel what follows */
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
	*(bool *) arg = !isnull;
}

/*
 * Touch the next chunk of the oldest running backfill, in a subtransaction
 * (the touch runs the owner's code, which may fail), bounded in time and in
 * lock waits so that it never holds up forwarding for long. Returns whether a
 * backfill is running (one more call may finish it).
 */
static bool
RunResyncChunk(void)
{
	bool		running = false;
	ErrorData  *edata = RunInSubtransaction(ResyncChunkStep, &running);

	if (edata == NULL)
	{
		ResyncFailures = 0;
		return running;
	}
	disable_timeout(STATEMENT_TIMEOUT, false);
	ResyncChunkFailed(edata);
	FreeErrorData(edata);
	return true;
}

/*
 * Run one chunk of a requested backfill (resync()), in its own transaction,
 * when the buffer has room: the touched rows come back through the stream.
 * Looks for requests once a second while none is running.
 */
static void
ResyncStep(void)
{
	static TimestampTz next_look = 0;
	static bool active = false;
	bool		isnull = true;

	if ((!active && GetCurrentTimestamp() < next_look) || GetCurrentTimestamp() < ResyncRetryAt)
		return;
	if (BatchPendingBytes() > BufferBytes() / 2)
		return;
	DecoderBeforeSql();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	/* nothing to do before CREATE EXTENSION */
	if (SPI_execute("SELECT to_regclass('cosmos_sink.resyncs') IS NOT NULL", true, 1) == SPI_OK_SELECT &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		active = RunResyncChunk();
	else
		active = false;
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	if (!active)
		next_look = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
}

/* Settle every finished request */
static int
CompleteRequests(long timeout_ms)
{
	HttpRequest *done[MAX_DONE];
	int			n = HttpPoll(timeout_ms, done, MAX_DONE);
	int			i;

	for (i = 0; i < n; i++)
	{
		if (SweepOwns(done[i]))
			SweepComplete(done[i]);	/* a listing request of recover()'s sweep */
		else
			BatchComplete(done[i]);
	}
	return n;
}

/* Move the confirmed LSN as far as acknowledgements allow */
static void
AdvanceConfirmed(bool may_record)
{
	XLogRecPtr	lsn = CheckpointAdvance();
	TimestampTz now = GetCurrentTimestamp();
	bool		idle = false;

	if (XLogRecPtrIsInvalid(lsn) && CheckpointEmpty() && BatchPendingChanges() == 0 &&
		DeadLetterQueued() == 0)
	{
		lsn = DecoderReadLsn();	/* nothing routed pending: let WAL go */
		idle = true;
	}
	/* never past what slot_checkpoint records (slot_guard.c) */
	if (!XLogRecPtrIsInvalid(lsn))
		DecoderConfirm(SlotGuardBound(lsn, may_record, idle));

	if (DecoderConfirmedLsn() != LastSavedLsn &&
		TimestampDifferenceExceeds(LastSlotSave, now, SLOT_SAVE_MS))
	{
		DecoderSaveSlot();
		LastSavedLsn = DecoderConfirmedLsn();
		LastSlotSave = now;
	}
}

/* Publish progress for the status view */
static void
PublishProgress(void)
{
	WorkerState state;

	char	   *problem;

	if (AwaitingFirstRoute && ClientReady)
		state = WORKER_IDLE;	/* no route yet: no slot to decode */
	else if (!ClientReady || !DecoderActive() || BatchRouteErrors() || DeadLettersFull(&problem))
		state = WORKER_ERROR;
	else if (StatusPaused() || !CosmosSinkEnabled)
		state = WORKER_PAUSED;
	else if (BatchThrottled())
		state = WORKER_THROTTLED;
	else if (CheckpointEmpty() && BatchPendingChanges() == 0 && DecoderCaughtUp())
		state = WORKER_IDLE;
	else
		state = WORKER_STREAMING;

	SpinLockAcquire(&CosmosSinkState->mutex);
	CosmosSinkState->state = state;
	CosmosSinkState->decoded_lsn = DecoderReadLsn();
	CosmosSinkState->confirmed_lsn = DecoderConfirmedLsn();
	CosmosSinkState->oldest_unacked_commit = CheckpointOldestCommitTime();
	CosmosSinkState->in_flight = HttpInFlight();
	SpinLockRelease(&CosmosSinkState->mutex);
}

/* Handle interrupts and reloads; usable inside decoding too */
static void
HandleInterrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
		ReloadConfig();
}

/* Whether the Entra ID token file was rewritten (checked once a second) */
static bool
TokenFileChanged(void)
{
	static TimestampTz last_check = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (!ClientReady || !TimestampDifferenceExceeds(last_check, now, 1000))
		return false;
	last_check = now;
	return CosmosClientCredentialsStale();
}

/* Whether requests may be sent now: enabled, not paused, credentials loaded */
static bool
Forwarding(void)
{
	return CosmosSinkEnabled && !StatusPaused() && ClientReady;
}


/*
 * Called from inside decoding when the buffer is full: send and wait until
 * Cosmos DB has taken enough (lag grows, memory does not).
 */
static void
PumpUntilBelowBudget(void)
{
	while (BatchPendingBytes() > BufferBytes() * 3 / 4)
	{
		long		wait;
		MemoryContext old = MemoryContextSwitchTo(PumpContext);

		HandleInterrupts();
		ResetLatch(MyLatch);
		/* full requests first; anything when nothing else would be in flight */
		if (Forwarding() && BatchDispatch(false) == 0)
			BatchDispatch(true);
		else if (!ClientReady && GetCurrentTimestamp() >= NextConfigAttempt)
			ConfigureClient();
		wait = HttpInFlight() > 0 || !Forwarding() ? 1000 : BatchNextWakeMs(WORKER_RETRY_MS);
		CompleteRequests(Max(wait, 1));
		AdvanceConfirmed(false);
		PublishProgress();
		MemoryContextSwitchTo(old);
		MemoryContextReset(PumpContext);
	}
}

/*
 * Called from inside decoding. full: the buffer is over budget, send and wait
 * until Cosmos DB has taken enough. Otherwise settle finished requests and
 * send full ones without waiting, so requests flow while decoding runs.
 */
static void
PumpFromDecoding(bool full)
{
	MemoryContext old;
	int			in_flight;

	if (full)
	{
		PumpUntilBelowBudget();
		return;
	}
	if (!Forwarding())
		return;
	old = MemoryContextSwitchTo(PumpContext);
	if (HttpInFlight() > 0)
		CompleteRequests(0);	/* settle what finished, freeing request slots */
	in_flight = HttpInFlight();
	if (BatchDispatch(false) > in_flight)
		CompleteRequests(0);	/* curl starts new transfers when driven */
	MemoryContextSwitchTo(old);
	MemoryContextReset(PumpContext);
}

/* How long to wait for sockets or the latch this round */
static long
WaitTimeMs(bool more_wal)
{
	long		wait = CosmosSinkPollIntervalMs;

	if (more_wal && BatchPendingBytes() < BufferBytes())
		return 0;
	if (HttpInFlight() < CosmosSinkMaxInFlight)
		wait = BatchNextWakeMs(wait);
	return Max(wait, 0);
}

/*
 * Acquire the slot and start decoding; a lost slot is an error until
 * recover(), no slot yet (no route) is an idle wait.
 */
static void
StartDecoding(void)
{
	char	   *problem = NULL;

	if (DecoderStart(PumpFromDecoding, &problem))
	{
		AwaitingFirstRoute = false;
		CheckFailoverSetup();
		return;
	}
	AwaitingFirstRoute = problem == NULL;
	if (AwaitingFirstRoute)
		StatusClearError();
	else
		WorkerProblem(problem);
	NextDecoderAttempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 AwaitingFirstRoute ? 1000 : WORKER_RETRY_MS);
}

/*
 * cosmos_sink.enabled went off while decoding: settle what is in flight (a
 * few seconds at most), confirm it, and exit so that the slot is released;
 * the restarted worker waits without touching it.
 */
static void
ReleaseSlotWhenDisabled(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

	while (HttpInFlight() > 0 && GetCurrentTimestamp() < deadline)
		CompleteRequests(100);
	AdvanceConfirmed(true);
	DecoderSaveSlot();
	ereport(LOG,
			(errmsg("cosmos_sink: disabled: releasing replication slot \"%s\"", CosmosSinkSlotName)));
	proc_exit(1);				/* restarted after bgw_restart_time, then waits */
}

/* One turn of the main loop */
static void
WorkerTurn(void)
{
	bool		more_wal = false;
	char	   *problem = NULL;
	bool		forwarding = Forwarding();

	if (!CosmosSinkEnabled && DecoderActive())
		ReleaseSlotWhenDisabled();
	if (!CosmosSinkEnabled)
	{
		/* disabled: leave the slot alone, wait for a reload */
		StatusSetState(WORKER_PAUSED);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, PG_WAIT_EXTENSION);
		return;
	}
	if ((!ClientReady && GetCurrentTimestamp() >= NextConfigAttempt) || TokenFileChanged())
		ConfigureClient();		/* first time, after a failure, or a rewritten token file */
	if (!DecoderActive() && GetCurrentTimestamp() >= NextDecoderAttempt)
		StartDecoding();

	/*
	 * Decode even while paused, throttled or misconfigured (up to the buffer):
	 * the oldest unacknowledged commit, and so lag_seconds, stays known.
	 */
	if (DecoderActive() && !DeadLettersFull(&problem))
		more_wal = DecoderRound(BufferBytes(), DECODE_SLICE_MS);
	if (forwarding && DecoderActive())
		BatchDispatch(true);
	if (DecoderActive())
		CompleteRequests(forwarding ? WaitTimeMs(more_wal) :
						 (more_wal && BatchPendingBytes() < BufferBytes() ? 0 : CosmosSinkPollIntervalMs));
	else
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WORKER_RETRY_MS, PG_WAIT_EXTENSION);
	if (DecoderActive() && BatchRouteErrors())
		ParkRemovedRoutes();
	if (DeadLetterQueued() > 0)
		FlushDeadLetters();
	if (forwarding && DecoderActive())
		ResyncStep();
	if (forwarding && DecoderActive())
		SweepStep(BatchPendingBytes() <= BufferBytes() / 2);
	if (DecoderActive())
		AdvanceConfirmed(true);
	PublishProgress();
}

/*
 * On a standby (the library is preloaded there too) there is nothing to
 * forward: state standby until a promotion, then on as a primary, from the
 * slot synchronised from the old primary (17 and later) or with the lost
 * slot's error (before 17, see slot_guard.c).
 */
static void
WaitForPromotion(void)
{
	bool		was_standby = false;

	while (RecoveryInProgress())
	{
		was_standby = true;
		StatusSetState(WORKER_STANDBY);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 STANDBY_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		HandleInterrupts();
	}
	if (was_standby)
	{
		ereport(LOG, (errmsg("cosmos_sink: this server was promoted: forwarding from here")));
		StatusSetState(WORKER_STARTING);
	}
}

/* Wait (state error, clear message) until wal_level and the plugin list allow decoding */
static void
WaitForPrerequisites(void)
{
	char	   *problem = NULL;

	while (!DecodingPrerequisitesMet(&problem))
	{
		WorkerProblem(problem);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WORKER_RETRY_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		HandleInterrupts();
	}
	StatusClearError();
}

/*
 * Ids and partition keys are the text of values: whatever postgresql.conf
 * says, the worker renders dates, intervals, floats and timestamptz one way
 * (ISO, the default interval style, shortest exact floats, UTC), so a
 * settings change never gives the same row another id or key. Documents
 * follow the same settings (timestamptz values in UTC).
 */
static void
PinKeyTextSettings(void)
{
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("DateStyle", "ISO, MDY", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_OVERRIDE);
}

/* Entry point of the background worker */
void
CosmosSinkWorkerMain(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(CosmosSinkDatabase, NULL, 0);
	pgstat_report_appname("cosmos_sink worker");
	/* a superuser session: no object of another role's schema may shadow a name */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	PinKeyTextSettings();

	SpinLockAcquire(&CosmosSinkState->mutex);
	CosmosSinkState->worker_pid = MyProcPid;
	CosmosSinkState->worker_latch = MyLatch;
	CosmosSinkState->state = WORKER_STARTING;
	SpinLockRelease(&CosmosSinkState->mutex);
	StatusClearWarning();		/* a standing warning is said again if it still holds */
	before_shmem_exit(WorkerExit, (Datum) 0);

	LoopContext = AllocSetContextCreate(TopMemoryContext, "cosmos_sink worker loop",
										ALLOCSET_DEFAULT_SIZES);
	PumpContext = AllocSetContextCreate(TopMemoryContext, "cosmos_sink pump",
										ALLOCSET_DEFAULT_SIZES);
	HttpInit();
	BatchInit();
	CheckpointInit();
	DeadLetterInit();

	WaitForPromotion();
	WaitForPrerequisites();
	ApplyDecodingMemory();
	if (CosmosSinkEnabled)
		ConfigureClient();

	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(LoopContext);

		ResetLatch(MyLatch);
		HandleInterrupts();
		SetCurrentStatementStartTimestamp();	/* now() in this turn's SQL */
		WorkerTurn();
		MemoryContextSwitchTo(old);
		MemoryContextReset(LoopContext);
	}
}
