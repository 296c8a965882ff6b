/*
 * slot_guard.c
 *		Knowing the replication slot is the one the routes' changes were kept
 *		in. Before the worker confirms the slot past a position it records
 *		that position (durably) in cosmos_sink.slot_checkpoint, so:
 *		- a slot that is missing while a position is recorded was dropped, or
 *		  this server is a restored backup or a promoted standby without it;
 *		- a slot whose restart point lies past the recorded position was made
 *		  again after the record (a new slot starts at the WAL's end);
 *		- an invalidated slot lost WAL it needed.
 *		Each means changes may be missing from Cosmos DB: the worker forwards
 *		nothing and says so until the operator calls recover(), which makes a
 *		new slot and re-sends every routed table. Only the first add_route()
 *		makes a slot without asking; the worker never makes one.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cosmos_sink.h"
#include "decoder.h"
#include "route.h"
#include "slot_guard.h"

#define SLOT_CHECKPOINT_TABLE "slot_checkpoint"
#define LIMIT_RECORD_MS		1000	/* the worker records a new limit at most this often */
#define IDLE_RECORD_BYTES	(256 * 1024)	/* WAL worth a record while routed tables are idle */

PG_FUNCTION_INFO_V1(recover);

static XLogRecPtr ConfirmLimit = InvalidXLogRecPtr;	/* recorded: confirm up to here */
static XLogRecPtr OwnRecordEnd = InvalidXLogRecPtr;	/* end of the worker's last record */
static TimestampTz LimitRecordedAt = 0;

/* Read the slot's shared state under the slot control lock */
void
SlotGuardFacts(SlotFacts *facts)
{
	ReplicationSlot *slot;

	memset(facts, 0, sizeof(SlotFacts));
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(CosmosSinkSlotName, false);
	if (slot != NULL)
	{
		facts->exists = true;
		facts->foreign = slot->data.database != MyDatabaseId ||
			strcmp(NameStr(slot->data.plugin), COSMOS_SINK_PLUGIN) != 0;
		facts->invalidated = CompatSlotInvalidated(slot);
		facts->synced = CompatSlotSynced(slot);
		facts->failover = CompatSlotFailover(slot);
		facts->active_pid = slot->active_pid;
		facts->restart_lsn = slot->data.restart_lsn;
	}
	LWLockRelease(ReplicationSlotControlLock);
}

/* The recorded limit of the slot's name (false: none, or no extension yet); needs SPI */
static bool
LoadLimit(XLogRecPtr *limit)
{
	bool		isnull = true;

	if (!OidIsValid(ExtensionTableOid(SLOT_CHECKPOINT_TABLE)))
		return false;
	if (SPI_execute_with_args("SELECT confirm_limit FROM " COSMOS_SINK_SCHEMA "." SLOT_CHECKPOINT_TABLE
							  " WHERE slot_name = $1",
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(CosmosSinkSlotName)},
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed == 0)
		return false;
	*limit = DatumGetLSN(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return !isnull;
}

/* Record that the slot may be confirmed up to limit; needs SPI (false: no extension) */
static bool
StoreLimit(XLogRecPtr limit)
{
	if (!OidIsValid(ExtensionTableOid(SLOT_CHECKPOINT_TABLE)))
		return false;
	SPI_execute_with_args("INSERT INTO " COSMOS_SINK_SCHEMA "." SLOT_CHECKPOINT_TABLE
						  " AS c (slot_name, confirm_limit) VALUES ($1, $2)"
						  " ON CONFLICT (slot_name) DO UPDATE"
						  " SET confirm_limit = EXCLUDED.confirm_limit, recorded_at = now()",
						  2, (Oid[]) {TEXTOID, LSNOID},
						  (Datum[]) {CStringGetTextDatum(CosmosSinkSlotName), LSNGetDatum(limit)},
						  NULL, false, 0);
	return true;
}

/* Why a slot cannot be trusted, or NULL; recorded: whether limit was read */
static char *
LostSlotProblem(const SlotFacts *facts, bool recorded, XLogRecPtr limit)
{
	if (!facts->exists && recorded)
		return psprintf("replication slot \"%s\" is gone: changes committed after %X/%X may be missing from Cosmos DB (the slot was dropped, or this server is a restored backup or a promoted standby without it); nothing is forwarded until you call cosmos_sink.recover()",
						CosmosSinkSlotName, LSN_FORMAT_ARGS(limit));
	if (facts->exists && facts->invalidated)
		return psprintf("replication slot \"%s\" was invalidated (WAL it needed was removed, see max_slot_wal_keep_size): changes may be missing from Cosmos DB; nothing is forwarded until you call cosmos_sink.recover()",
						CosmosSinkSlotName);
	/* a slot copied from a primary was checked there; it lags its record */
	if (facts->exists && recorded && !facts->synced && facts->restart_lsn > limit)
		return psprintf("replication slot \"%s\" was made again: it starts at %X/%X, past %X/%X where cosmos_sink left off, so changes in between may be missing from Cosmos DB; nothing is forwarded until you call cosmos_sink.recover()",
						CosmosSinkSlotName, LSN_FORMAT_ARGS(facts->restart_lsn),
						LSN_FORMAT_ARGS(limit));
	return NULL;
}

/* Run SQL in a transaction of its own; durable: its commit is flushed before it returns */
static void
BeginGuardTransaction(bool durable)
{
	DecoderBeforeSql();			/* no cache entry of decoding's snapshots serves SQL */
	StartTransactionCommand();
	/* flushed here, never waiting for a synchronous standby (local is enough) */
	if (durable)
		(void) set_config_option("synchronous_commit", "local", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* Commit what BeginGuardTransaction started */
static void
EndGuardTransaction(void)
{
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * The worker's judgement of its slot before decoding it: ours (a slot nobody
 * recorded, e.g. left by an earlier CREATE EXTENSION, is adopted), none yet
 * (no route ever made one), or lost (with a problem naming recover()).
 */
SlotVerdict
SlotGuardVerify(const SlotFacts *facts, char **problem)
{
	XLogRecPtr	limit = InvalidXLogRecPtr;
	bool		recorded;
	SlotVerdict verdict = SLOT_OURS;

	BeginGuardTransaction(true);
	recorded = LoadLimit(&limit);
	*problem = LostSlotProblem(facts, recorded, limit);
	if (*problem != NULL)
		verdict = SLOT_LOST;
	else if (!facts->exists)
		verdict = SLOT_NOT_YET;
	else if (!recorded)
	{
		limit = GetXLogInsertRecPtr();
		if (!StoreLimit(limit))
			limit = InvalidXLogRecPtr;	/* no extension: nothing routed to guard */
	}
	EndGuardTransaction();
	ConfirmLimit = limit;
	OwnRecordEnd = XactLastCommitEnd;
	LimitRecordedAt = GetCurrentTimestamp();
	return verdict;
}

/*
 * How far the slot may be confirmed towards target. Past the recorded limit
 * only after recording a new one (the WAL's end now): at most once a second,
 * only when WAL other than our own last record arrived, and while routed
 * tables are idle (idle) only once IDLE_RECORD_BYTES of WAL would be let go,
 * so an idle server is not kept writing records. may_record: false inside
 * decoding, where no transaction can run.
 */
XLogRecPtr
SlotGuardBound(XLogRecPtr target, bool may_record, bool idle)
{
	XLogRecPtr	limit;

	if (target <= ConfirmLimit)
		return target;
	if (!may_record || target <= OwnRecordEnd ||
		(idle && target - ConfirmLimit < IDLE_RECORD_BYTES) ||
		!TimestampDifferenceExceeds(LimitRecordedAt, GetCurrentTimestamp(), LIMIT_RECORD_MS))
		return ConfirmLimit;
	limit = GetXLogInsertRecPtr();
	BeginGuardTransaction(true);
	if (!StoreLimit(limit))
		limit = target;			/* no extension (dropped): nothing routed to guard */
	EndGuardTransaction();
	ConfirmLimit = limit;
	OwnRecordEnd = XactLastCommitEnd;
	LimitRecordedAt = GetCurrentTimestamp();
	return Min(target, limit);
}

/* The name of a physical slot a standby streams through now, or NULL */
static char *
StreamingStandbySlot(void)
{
	char	   *name = NULL;
	int			i;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots && name == NULL; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (s->in_use && SlotIsPhysical(s) && s->active_pid != 0 &&
			s->data.persistency == RS_PERSISTENT)	/* not pg_basebackup's */
			name = pstrdup(NameStr(s->data.name));
	}
	LWLockRelease(ReplicationSlotControlLock);
	return name;
}

/*
 * What of the failover setup (17 and later) can be checked here and is
 * missing, or NULL: the slot is not a failover slot although it should be,
 * or a standby streams while synchronized_standby_slots does not name it
 * (decoding could then get ahead of it and a failover would lose changes
 * Cosmos DB has). Checked when the worker starts decoding and on reload.
 */
char *
SlotGuardFailoverProblem(void)
{
	SlotFacts	facts;
	char	   *standby;

	if (!COMPAT_SLOT_FAILOVER_SUPPORTED)
		return NULL;
	SlotGuardFacts(&facts);
	standby = StreamingStandbySlot();
	if (facts.exists && CosmosSinkFailoverSlot && !facts.failover && !facts.synced)
		return psprintf("replication slot \"%s\" is not a failover slot, so a standby will not have it after a failover (see the server log for why it could not be changed)",
						CosmosSinkSlotName);
	if (standby != NULL && !CosmosSinkFailoverSlot)
		return psprintf("a standby streams through replication slot \"%s\" but cosmos_sink.failover_slot is off: after a failover to it the slot is lost and recover() must re-send every table",
						standby);
	if (standby != NULL && CompatStandbySlotsSetting()[0] == '\0')
		return psprintf("a standby streams through replication slot \"%s\" but synchronized_standby_slots is empty: changes can reach Cosmos DB before that standby has them; set synchronized_standby_slots = '%s' on this server",
						standby, standby);
	return NULL;
}

/*
 * The slot just acquired is still the one SlotGuardVerify judged: it could
 * have been dropped and made again in between (the worker did not hold it).
 */
bool
SlotGuardAcquiredIsOurs(void)
{
	return XLogRecPtrIsInvalid(ConfirmLimit) || CompatSlotSynced(MyReplicationSlot) ||
		MyReplicationSlot->data.restart_lsn <= ConfirmLimit;
}

/* One slot change at a time: add_route() and recover() wait for each other */
static void
LockSlotChanges(void)
{
	LockRelationOid(ExtensionTableOid(SLOT_CHECKPOINT_TABLE), ShareUpdateExclusiveLock);
}

/* Create the slot here (waits for running transactions), which needs no write yet */
static void
CreateSlotHere(void)
{
	if (GetTopTransactionIdIfAny() != InvalidTransactionId)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot create replication slot \"%s\" in a transaction that has written",
						CosmosSinkSlotName),
				 errhint("Call it in a transaction of its own.")));
	/* a failover slot (17 and later) unless cosmos_sink.failover_slot = off */
	SPI_execute_with_args(COMPAT_CREATE_SLOT_SQL,
						  3, (Oid[]) {TEXTOID, TEXTOID, BOOLOID},
						  (Datum[]) {CStringGetTextDatum(CosmosSinkSlotName),
						  CStringGetTextDatum(COSMOS_SINK_PLUGIN), BoolGetDatum(CosmosSinkFailoverSlot)},
						  NULL, false, 0);
	ereport(NOTICE,
			(errmsg("created replication slot \"%s\" for cosmos_sink", CosmosSinkSlotName)));
}

/* Refuse a slot of another database or plugin under the worker's slot name */
static void
CheckSlotNotForeign(const SlotFacts *facts)
{
	if (facts->exists && facts->foreign)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" exists but is not a cosmos_sink slot of this database",
						CosmosSinkSlotName),
				 errhint("Drop it with pg_drop_replication_slot('%s'), or set cosmos_sink.slot_name to another name.",
						 CosmosSinkSlotName)));
}

/*
 * Under the slot-change lock, with SPI connected: the slot's facts, whether
 * a position is recorded, and why the slot cannot be trusted (or NULL).
 */
static char *
SlotProblemLocked(SlotFacts *facts, bool *recorded)
{
	XLogRecPtr	limit = InvalidXLogRecPtr;

	LockSlotChanges();
	SlotGuardFacts(facts);
	CheckSlotNotForeign(facts);
	SPI_connect();
	*recorded = LoadLimit(&limit);
	return LostSlotProblem(facts, *recorded, limit);
}

/*
 * add_route(): make sure the slot exists and is consistent before the route
 * does, so every change committed after add_route() returns is kept. Creates
 * it only when none was ever recorded; a lost slot is an error naming
 * recover(). Waits for a concurrent add_route() that is creating it.
 */
void
SlotGuardEnsureForRoute(void)
{
	SlotFacts	facts;
	bool		recorded;
	char	   *problem = SlotProblemLocked(&facts, &recorded);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cosmos_sink: %s", problem),
				 errhint("SELECT cosmos_sink.recover(); makes a new slot and re-sends every routed table.")));
	if (!facts.exists)
		CreateSlotHere();
	if (!facts.exists || !recorded)
		StoreLimit(GetXLogInsertRecPtr());
	SPI_finish();
}

/*
 * Ask the worker to sweep each routed container after the re-send (sweep.c):
 * one table per container (the first routed) sweeps it, the check covers
 * every route of that container. delete_missing = false asks for none.
 */
static void
QueueSweeps(bool delete_missing)
{
	SPI_execute_with_args("UPDATE " COSMOS_SINK_SCHEMA ".resyncs s"
						  " SET sweep = CASE WHEN $1 AND s.staging_table = (SELECT r2.staging_table"
						  "   FROM " COSMOS_SINK_SCHEMA "." ROUTES_TABLE " r JOIN " COSMOS_SINK_SCHEMA "." ROUTES_TABLE " r2"
						  "     ON r2.cosmos_database = r.cosmos_database AND r2.container = r.container"
						  "  WHERE r.staging_table = s.staging_table ORDER BY r2.route_id LIMIT 1)"
						  " THEN 'pending' END, docs_checked = 0, docs_deleted = 0",
						  1, (Oid[]) {BOOLOID}, (Datum[]) {BoolGetDatum(delete_missing)},
						  NULL, false, 0);
}

/*
 * recover(delete_missing): after a lost slot, make a new one and re-send
 * every routed table through it (resync()); then, unless delete_missing is
 * false, delete the documents whose rows are gone. Refused while the slot is
 * intact.
 */
Datum
recover(PG_FUNCTION_ARGS)
{
	SlotFacts	facts;
	bool		recorded;
	char	   *problem;
	int64		routes;

	CheckRouteDatabase();
	problem = SlotProblemLocked(&facts, &recorded);
	if (problem == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" is intact: nothing to recover", CosmosSinkSlotName),
				 errhint("To re-send one table, call cosmos_sink.resync('table').")));
	if (facts.exists && facts.active_pid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("replication slot \"%s\" is in use by process %d",
						CosmosSinkSlotName, facts.active_pid)));
	if (facts.exists)
		SPI_execute_with_args("SELECT pg_catalog.pg_drop_replication_slot($1)",
							  1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(CosmosSinkSlotName)},
							  NULL, false, 0);
	CreateSlotHere();
	StoreLimit(GetXLogInsertRecPtr());
	SPI_execute("SELECT " COSMOS_SINK_SCHEMA ".resync(staging_table) FROM " COSMOS_SINK_SCHEMA "." ROUTES_TABLE,
				false, 0);
	routes = (int64) SPI_processed;
	QueueSweeps(PG_GETARG_BOOL(0));
	SPI_finish();
	ereport(NOTICE,
			(errmsg("cosmos_sink: made replication slot \"%s\" again; " INT64_FORMAT " routed tables are being re-sent",
					CosmosSinkSlotName, routes),
			 errhint("cosmos_sink.status shows their progress in resync_progress.")));
	PG_RETURN_INT64(routes);
}
