/*
 * decoder.c
 *		In-process consumption of the replication slot (as pg_squeeze does):
 *		the worker acquires the slot, keeps one decoding context for its whole
 *		life, reads WAL only up to the flush position, and hands each plugin
 *		record straight to the batcher. Confirmation happens only on request.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogreader.h"
#include "access/xlogutils.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "compat.h"
#include "cosmos_sink.h"
#include "decoder.h"
#include "record.h"
#include "slot_guard.h"
#include "stats.h"
#include "status.h"
#include "subxact.h"

static LogicalDecodingContext *Ctx = NULL;
static ResourceOwner DecodeOwner = NULL;
static DecoderPumpHook Pump = NULL;
static Size Budget = 0;
static uint64 Written = 0;		/* records handed to the batcher */
static XLogRecPtr ReadUpTo = InvalidXLogRecPtr;
static MemoryContext DecodeMemory = NULL;	/* the reader allocates lazily: never reset */
static bool CachesHistoric = false;	/* caches may hold entries built while decoding */
static bool CachesCurrent = true;	/* caches may hold entries built by SQL since (start: yes) */

/* Largest record buffer kept between records: room for any document that can be sent */
#define RECORD_BUFFER_KEEP_BYTES (4 * 1024 * 1024)
#define STANDBY_WAIT_MS		100	/* how often a wait for the standbys looks again */

/*
 * Plugin output starts a record: reset the buffer, giving back the memory a
 * row too large to send grew it to (building stopped past the limit)
 */
static void
DecoderPrepareWrite(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
	if (ctx->out->maxlen > RECORD_BUFFER_KEEP_BYTES)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(ctx->out->data));

		pfree(ctx->out->data);
		initStringInfo(ctx->out);
		MemoryContextSwitchTo(old);
		return;
	}
	resetStringInfo(ctx->out);
}

/* An UPDATE the plugin found unchanged: count it for its route, nothing to send */
static void
CountSkipped(const ChangeRecord *rec)
{
	SinkRoute  *route = BatchFindRoute(rec->route_id);

	StatsRecordSkipped(rec->route_id, route != NULL ? route->relid : InvalidOid);
}

/* Plugin output ends a record: hand it to the batcher */
static void
DecoderWrite(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
	ChangeRecord rec;

	if (!RecordParse(ctx->out->data, ctx->out->len, &rec))
		elog(ERROR, "cosmos_sink: malformed change record at %X/%X", LSN_FORMAT_ARGS(lsn));
	switch (rec.kind)
	{
		case RECORD_ROUTE:
			StatusNoteRouteId(rec.route_id);
			BatchRoute(&rec);
			break;
		case RECORD_UPSERT:
		case RECORD_DELETE:
			BatchAddChange(&rec, lsn);
			break;
		case RECORD_ERROR:
			BatchAddProblem(&rec, lsn);
			break;
		case RECORD_TRUNCATE:
			BatchTruncate(&rec);
			break;
		case RECORD_SKIPPED:
			CountSkipped(&rec);
			break;
		case RECORD_COMMIT:
			BatchCommit(&rec);
			break;
	}
	/*
	 * A transaction larger than the budget is sent while it is decoded; and
	 * requests keep flowing while decoding runs, so the network and Cosmos DB
	 * work in parallel with decoding instead of between decoding rounds.
	 */
	if (Pump == NULL)
		return;
	if (BatchPendingBytes() > Budget)
		Pump(true);
	else if (++Written % DECODER_SERVICE_EVERY == 0)
		Pump(false);
}

/* Progress callback: nothing to report to anyone */
static void
DecoderUpdateProgress(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
					  bool skipped_xact)
{
}

/* Subtransaction step: make the slot a failover slot or not, as the setting says */
static void
AlterFailoverStep(void *arg)
{
	CompatSlotAlterFailover(CosmosSinkSlotName, CosmosSinkFailoverSlot);
}

/*
 * Bring an existing slot in line with cosmos_sink.failover_slot (17 and
 * later), so a slot made before the setting (or before an upgrade) reaches
 * the standbys too. A failure is a warning: decoding goes on.
 */
static void
ApplyFailoverSetting(const SlotFacts *facts)
{
	ErrorData  *edata;

	if (!COMPAT_SLOT_FAILOVER_SUPPORTED || !facts->exists || facts->synced ||
		facts->failover == CosmosSinkFailoverSlot)
		return;
	StartTransactionCommand();
	edata = RunInSubtransaction(AlterFailoverStep, NULL);
	CommitTransactionCommand();
	if (edata != NULL)
		ereport(WARNING,
				(errmsg("cosmos_sink: could not make replication slot \"%s\" %s: %s",
						CosmosSinkSlotName, CosmosSinkFailoverSlot ? "a failover slot" : "a plain slot",
						edata->message)));
	else
		ereport(LOG,
				(errmsg("cosmos_sink: replication slot \"%s\" is now %s", CosmosSinkSlotName,
						CosmosSinkFailoverSlot ? "a failover slot (synchronised to standbys)" : "a plain slot")));
}

/* Whether the slot is ours to use now; false with a problem, or with none while no route made it yet */
static bool
SlotUsable(char **problem)
{
	SlotFacts	facts;

	*problem = NULL;
	SlotGuardFacts(&facts);
	if (facts.exists && facts.foreign)
	{
		*problem = psprintf("replication slot \"%s\" is not a cosmos_sink slot of database \"%s\"; drop it or set cosmos_sink.slot_name",
							CosmosSinkSlotName, CosmosSinkDatabase);
		return false;
	}
	if (facts.exists && facts.active_pid != 0)
	{
		*problem = psprintf("replication slot \"%s\" is in use by process %d",
							CosmosSinkSlotName, facts.active_pid);
		return false;
	}
	if (SlotGuardVerify(&facts, problem) != SLOT_OURS)
		return false;
	ApplyFailoverSetting(&facts);
	return true;
}

/*
 * Make this process count again in every other backend's snapshots and
 * horizons. CreateDecodingContext() outside a transaction (as a walsender
 * calls it) marks the process PROC_IN_LOGICAL_DECODING, and other backends
 * then leave its xid and xmin out: a reader would take a backfill chunk's
 * running transaction for an aborted one and hint the rows it updates as
 * never deleted, leaving two live versions once it commits. This worker
 * runs write transactions between decoding rounds, so it must be counted
 * as an ordinary backend, as pg_logical_slot_get_changes() (which decodes
 * inside a transaction) is. Being counted can only hold horizons back: while
 * decoding replays a transaction, the xmin of its historic snapshot may be
 * published and keep VACUUM from a few dead rows for that long. The slot's
 * catalog_xmin still guards the catalog rows decoding reads.
 */
static void
DecoderCountInSnapshots(void)
{
	LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
	MyProc->statusFlags &= ~PROC_IN_LOGICAL_DECODING;
	ProcGlobal->statusFlags[MyProc->pgxactoff] = MyProc->statusFlags;
	LWLockRelease(ProcArrayLock);
}

/*
 * Acquire the slot and start decoding from its confirmed position. False
 * with a message when the slot cannot be used, or with none while no route
 * made it yet (the worker never makes it: see slot_guard.c).
 */
bool
DecoderStart(DecoderPumpHook pump, char **problem)
{
	ResourceOwner saved = CurrentResourceOwner;
	MemoryContext old;

	if (Ctx != NULL)
		return true;
	if (!SlotUsable(problem))
		return false;

	Pump = pump;
	if (DecodeOwner == NULL)
		DecodeOwner = ResourceOwnerCreate(NULL, "cosmos_sink decoding");
	CurrentResourceOwner = DecodeOwner;
	/* the context lives as long as the worker, not the loop turn */
	if (DecodeMemory == NULL)
		DecodeMemory = AllocSetContextCreate(TopMemoryContext, "cosmos_sink decoding",
											 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(DecodeMemory);
	CompatReplicationSlotAcquire(CosmosSinkSlotName, true);
	if (!SlotGuardAcquiredIsOurs())
	{
		ReplicationSlotRelease();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = saved;
		*problem = psprintf("replication slot \"%s\" changed while the worker was starting; checking it again",
							CosmosSinkSlotName);
		return false;
	}
	Ctx = CreateDecodingContext(InvalidXLogRecPtr,
								list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)),
								false,
								XL_ROUTINE(.page_read = read_local_xlog_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								DecoderPrepareWrite, DecoderWrite, DecoderUpdateProgress);
	DecoderCountInSnapshots();
	XLogBeginRead(Ctx->reader, MyReplicationSlot->data.restart_lsn);
	ReadUpTo = MyReplicationSlot->data.restart_lsn;
	MemoryContextSwitchTo(old);
	CurrentResourceOwner = saved;
	ereport(LOG,
			(errmsg("cosmos_sink: streaming from replication slot \"%s\" at %X/%X",
					CosmosSinkSlotName, LSN_FORMAT_ARGS(MyReplicationSlot->data.confirmed_flush))));
	return true;
}

/* Whether the slot is held and decoding can go on */
bool
DecoderActive(void)
{
	return Ctx != NULL;
}

/*
 * The standby comes first: a change of a failover slot is decoded only once
 * every standby of synchronized_standby_slots has received its WAL (as
 * PostgreSQL's walsender and SQL functions wait), so a failover never finds
 * in Cosmos DB a change the promoted standby does not have. Meanwhile the
 * requests already sent are settled; the wait shows in last_error.
 */
static void
WaitForStandbys(XLogRecPtr lsn)
{
	bool		said = false;
	bool		reloaded = false;

	if (!CompatSlotFailover(MyReplicationSlot))
		return;
	while (!CompatStandbysHaveWal(lsn))
	{
		if (!said)
			StatusSetError("waiting for the standbys of synchronized_standby_slots (%s) to receive WAL up to %X/%X: nothing past it is forwarded until they do",
						   CompatStandbySlotsSetting(), LSN_FORMAT_ARGS(lsn));
		said = true;
		Pump(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 STANDBY_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			/* synchronized_standby_slots may have changed; the worker reloads again after */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			reloaded = true;
		}
	}
	if (said)
		StatusClearError();
	if (reloaded)
		ConfigReloadPending = true;
}

/*
 * Decode WAL up to the current flush position, while the batcher is within
 * budget and for at most max_ms. Returns true if there is more to read.
 */
bool
DecoderRound(Size budget, long max_ms)
{
	XLogRecPtr	end = CompatGetFlushRecPtr();
	TimestampTz stop_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), max_ms);
	ResourceOwner saved = CurrentResourceOwner;
	MemoryContext old = MemoryContextSwitchTo(DecodeMemory);
	int			n = 0;

	Budget = budget;
	CurrentResourceOwner = DecodeOwner;
	if (CachesCurrent)
		InvalidateSystemCaches();	/* entries built by SQL must not serve decoding */
	CachesCurrent = false;
	CachesHistoric = true;
	while (Ctx->reader->EndRecPtr < end && BatchPendingBytes() < budget)
	{
		char	   *errm = NULL;
		XLogRecord *record = XLogReadRecord(Ctx->reader, &errm);

		if (errm)
			elog(ERROR, "cosmos_sink: could not read WAL: %s", errm);
		if (record != NULL)
		{
			WaitForStandbys(Ctx->reader->EndRecPtr);
			LogicalDecodingProcessRecord(Ctx, Ctx->reader);
		}
		CHECK_FOR_INTERRUPTS();
		if (++n % 256 == 0 && GetCurrentTimestamp() >= stop_at)
			break;
	}
	CurrentResourceOwner = saved;
	MemoryContextSwitchTo(old);
	ReadUpTo = Ctx->reader->EndRecPtr;
	return ReadUpTo < end;
}

/*
 * The worker is about to run SQL: drop cache entries built under decoding's
 * historic snapshots, and remember to drop SQL's before the next round
 * (logicalfuncs.c does both around every call; here only when needed).
 */
void
DecoderBeforeSql(void)
{
	if (CachesHistoric)
		InvalidateSystemCaches();
	CachesHistoric = false;
	CachesCurrent = true;
}

/* How far WAL has been read */
XLogRecPtr
DecoderReadLsn(void)
{
	return ReadUpTo;
}

/* Whether everything flushed so far has been read */
bool
DecoderCaughtUp(void)
{
	return Ctx != NULL && Ctx->reader->EndRecPtr >= CompatGetFlushRecPtr();
}

/* Tell the slot Cosmos DB has everything before lsn (only ever forward) */
void
DecoderConfirm(XLogRecPtr lsn)
{
	if (Ctx == NULL || lsn <= MyReplicationSlot->data.confirmed_flush)
		return;
	LogicalConfirmReceivedLocation(lsn);
}

/* The slot's confirmed position */
XLogRecPtr
DecoderConfirmedLsn(void)
{
	return Ctx ? MyReplicationSlot->data.confirmed_flush : InvalidXLogRecPtr;
}

/* Make the confirmed position durable, bounding the replay after a crash */
void
DecoderSaveSlot(void)
{
	if (Ctx == NULL)
		return;
	ReplicationSlotMarkDirty();
	ReplicationSlotSave();
}
