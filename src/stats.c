/*
 * stats.c
 *		Per-route counters in shared memory, written by the worker once per
 *		finished request (a spinlock per route, held for a few additions) and
 *		read by container_stats(). RU spend is kept in micro-RU, so ru_total is
 *		the exact sum of the charges Cosmos DB reported. Counters survive a
 *		worker restart; stats_reset says since when they count.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "stats.h"

PG_FUNCTION_INFO_V1(container_stats_internal);
PG_FUNCTION_INFO_V1(reset_stats);

typedef struct RouteStats
{
	slock_t		mutex;
	int32		route_id;		/* 0 = free slot */
	Oid			relid;
	int64		upserts;
	int64		deletes;
	int64		requests;
	int64		throttled;
	int64		retries;
	int64		dead_lettered;
	int64		truncates;
	int64		skipped;		/* UPDATEs that changed nothing, not sent */
	int64		ops_sent;		/* for avg_batch_ops */
	int64		micro_ru;		/* exact RU total, in millionths */
	int64		ru_second[STATS_RU_WINDOW];	/* micro-RU per second of time */
	int64		ru_second_at[STATS_RU_WINDOW];	/* which second (epoch) each slot holds */
	int64		latency[STATS_LATENCY_BUCKETS]; /* requests by duration bucket */
	TimestampTz last_ack_at;
	TimestampTz stats_reset;
	/* the RU budget in force (state, not counters: reset_stats() keeps it) */
	double		provisioned;	/* the offer's RU/s; < 0: not known */
	double		budget;			/* RU/s; 0: none */
	char		budget_source[STATS_SOURCE_LEN];
} RouteStats;

typedef struct StatsShared
{
	LWLock	   *lock;			/* taken only to claim or reset slots */
	RouteStats	routes[STATS_MAX_ROUTES];
} StatsShared;

static StatsShared *Stats = NULL;

/* Reserve the shared memory (called from the shmem request hook) */
void
StatsShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(StatsShared)));
	RequestNamedLWLockTranche("cosmos_sink stats", 1);
}

/* Create or attach the counters (called from the shmem startup hook) */
void
StatsShmemStartup(void)
{
	bool		found;
	int			i;

	Stats = ShmemInitStruct("cosmos_sink stats", sizeof(StatsShared), &found);
	if (found)
		return;
	memset(Stats, 0, sizeof(StatsShared));
	Stats->lock = &(GetNamedLWLockTranche("cosmos_sink stats"))->lock;
	for (i = 0; i < STATS_MAX_ROUTES; i++)
		SpinLockInit(&Stats->routes[i].mutex);
}

/* Zero one slot's counters (caller holds its mutex) */
static void
ClearSlot(RouteStats *rs)
{
	rs->upserts = rs->deletes = rs->requests = rs->throttled = 0;
	rs->retries = rs->dead_lettered = rs->truncates = rs->ops_sent = rs->micro_ru = 0;
	rs->skipped = 0;
	memset(rs->ru_second, 0, sizeof(rs->ru_second));
	memset(rs->ru_second_at, 0, sizeof(rs->ru_second_at));
	memset(rs->latency, 0, sizeof(rs->latency));
	rs->last_ack_at = 0;
	rs->stats_reset = GetCurrentTimestamp();
}

/* The slot of a route, claimed on first use; NULL when all are taken */
static RouteStats *
SlotFor(int32 route_id, Oid relid)
{
	static int	last = 0;		/* worker-local hint: routes repeat */
	int			i;
	RouteStats *free_slot = NULL;

	if (Stats == NULL)
		return NULL;
	if (Stats->routes[last].route_id == route_id)
		return &Stats->routes[last];
	for (i = 0; i < STATS_MAX_ROUTES; i++)
		if (Stats->routes[i].route_id == route_id)
			return &Stats->routes[last = i];

	LWLockAcquire(Stats->lock, LW_EXCLUSIVE);
	for (i = 0; i < STATS_MAX_ROUTES && free_slot == NULL; i++)
		if (Stats->routes[i].route_id == 0)
			free_slot = &Stats->routes[last = i];
	if (free_slot != NULL)
	{
		SpinLockAcquire(&free_slot->mutex);
		ClearSlot(free_slot);
		free_slot->relid = relid;
		free_slot->provisioned = -1;
		free_slot->budget = 0;
		free_slot->budget_source[0] = '\0';
		free_slot->route_id = route_id;
		SpinLockRelease(&free_slot->mutex);
	}
	LWLockRelease(Stats->lock);
	return free_slot;
}

/* Latency bucket: 0 for < 1 ms, then one per power of two */
static int
LatencyBucket(long ms)
{
	int			b = 0;

	while (ms > 0 && b < STATS_LATENCY_BUCKETS - 1)
	{
		ms >>= 1;
		b++;
	}
	return b;
}

/* Add one finished request to its route's counters */
void
StatsRecordRequest(const RequestStats *req)
{
	RouteStats *rs = SlotFor(req->route_id, req->relid);
	int64		micro = (int64) llround(req->request_charge * 1000000.0);
	int64		second = (int64) (GetCurrentTimestamp() / USECS_PER_SEC);
	int			idx = (int) (second % STATS_RU_WINDOW);

	if (rs == NULL)
		return;
	SpinLockAcquire(&rs->mutex);
	rs->requests++;
	rs->ops_sent += req->ops;
	rs->upserts += req->upserts;
	rs->deletes += req->deletes;
	rs->retries += req->retries;
	rs->throttled += req->throttled ? 1 : 0;
	rs->micro_ru += micro;
	if (rs->ru_second_at[idx] != second)
	{
		rs->ru_second_at[idx] = second;
		rs->ru_second[idx] = 0;
	}
	rs->ru_second[idx] += micro;
	rs->latency[LatencyBucket(req->duration_ms)]++;
	if (req->upserts + req->deletes > 0)
		rs->last_ack_at = GetCurrentTimestamp();
	SpinLockRelease(&rs->mutex);
}

/* Count records parked without a request (local checks, plugin problems) */
void
StatsRecordDeadLetters(int32 route_id, Oid relid, int n)
{
	RouteStats *rs = SlotFor(route_id, relid);

	if (rs == NULL)
		return;
	SpinLockAcquire(&rs->mutex);
	rs->dead_lettered += n;
	SpinLockRelease(&rs->mutex);
}

/* Count a TRUNCATE of a routed table (not forwarded; documents are kept) */
void
StatsRecordTruncate(int32 route_id, Oid relid)
{
	RouteStats *rs = SlotFor(route_id, relid);

	if (rs == NULL)
		return;
	SpinLockAcquire(&rs->mutex);
	rs->truncates++;
	SpinLockRelease(&rs->mutex);
}

/* Count an UPDATE that changed nothing (not sent: it would cost RU for nothing) */
void
StatsRecordSkipped(int32 route_id, Oid relid)
{
	RouteStats *rs = SlotFor(route_id, relid);

	if (rs == NULL)
		return;
	SpinLockAcquire(&rs->mutex);
	rs->skipped++;
	SpinLockRelease(&rs->mutex);
}

/* The RU budget in force for a route: provisioned RU/s (< 0: unknown), budget (0: none), where from */
void
StatsRecordBudget(int32 route_id, Oid relid, double provisioned, double budget,
				  const char *source)
{
	RouteStats *rs = SlotFor(route_id, relid);
	/* cut at a whole character: a shortened name or message stays valid text */
	int			len = pg_mbcliplen(source, strlen(source), STATS_SOURCE_LEN - 1);

	if (rs == NULL)
		return;
	SpinLockAcquire(&rs->mutex);
	rs->provisioned = provisioned;
	rs->budget = budget;
	memcpy(rs->budget_source, source, len);
	rs->budget_source[len] = '\0';
	SpinLockRelease(&rs->mutex);
}

/* Latency at a quantile, in ms: the upper bound of the bucket holding it */
static double
LatencyQuantile(const int64 *latency, double q)
{
	int64		total = 0;
	int64		seen = 0;
	int			b;

	for (b = 0; b < STATS_LATENCY_BUCKETS; b++)
		total += latency[b];
	if (total == 0)
		return 0;
	for (b = 0; b < STATS_LATENCY_BUCKETS; b++)
	{
		seen += latency[b];
		if (seen >= (int64) ceil(q * total))
			return b == 0 ? 1 : (double) (1L << b);
	}
	return (double) (1L << (STATS_LATENCY_BUCKETS - 1));
}

/* RU spent per second over the last STATS_RU_WINDOW seconds */
static double
RuPerSecond(const RouteStats *rs)
{
	int64		now = (int64) (GetCurrentTimestamp() / USECS_PER_SEC);
	int64		sum = 0;
	int			i;

	for (i = 0; i < STATS_RU_WINDOW; i++)
		if (rs->ru_second_at[i] > now - STATS_RU_WINDOW && rs->ru_second_at[i] <= now)
			sum += rs->ru_second[i];
	return (double) sum / 1000000.0 / STATS_RU_WINDOW;
}

/* container_stats_internal(): one row per route slot in use */
Datum
container_stats_internal(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	if (Stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cosmos_sink is not loaded"),
				 errhint("Add cosmos_sink to shared_preload_libraries in postgresql.conf and restart the server.")));
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < STATS_MAX_ROUTES; i++)
	{
		RouteStats	snap;
		Datum		values[20];
		bool		nulls[20] = {0};

		SpinLockAcquire(&Stats->routes[i].mutex);
		memcpy(&snap, &Stats->routes[i], sizeof(RouteStats));
		SpinLockRelease(&Stats->routes[i].mutex);
		if (snap.route_id == 0)
			continue;
		values[0] = Int32GetDatum(snap.route_id);
		values[1] = Int64GetDatum(snap.upserts);
		values[2] = Int64GetDatum(snap.deletes);
		values[3] = Int64GetDatum(snap.requests);
		values[4] = Int64GetDatum(snap.throttled);
		values[5] = Int64GetDatum(snap.retries);
		values[6] = Int64GetDatum(snap.dead_lettered);
		values[7] = DirectFunctionCall3(numeric_in, CStringGetDatum(psprintf("%lld.%06lld",
																			 (long long) (snap.micro_ru / 1000000),
																			 (long long) (snap.micro_ru % 1000000))),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		values[8] = Float8GetDatum(RuPerSecond(&snap));
		values[9] = Float8GetDatum(snap.requests ? (double) snap.ops_sent / snap.requests : 0);
		values[10] = Float8GetDatum(LatencyQuantile(snap.latency, 0.50));
		values[11] = Float8GetDatum(LatencyQuantile(snap.latency, 0.99));
		values[12] = TimestampTzGetDatum(snap.last_ack_at);
		nulls[12] = snap.last_ack_at == 0;
		values[13] = TimestampTzGetDatum(snap.stats_reset);
		values[14] = ObjectIdGetDatum(snap.relid);
		values[15] = Int64GetDatum(snap.truncates);
		values[16] = Int64GetDatum(snap.skipped);
		values[17] = Float8GetDatum(snap.provisioned);
		nulls[17] = snap.provisioned < 0;
		values[18] = Float8GetDatum(snap.budget);
		nulls[18] = snap.budget <= 0;
		values[19] = CStringGetTextDatum(snap.budget_source);
		nulls[19] = snap.budget_source[0] == '\0';
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* reset_stats(): zero every counter; stats_reset becomes now */
Datum
reset_stats(PG_FUNCTION_ARGS)
{
	int			i;

	if (Stats == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(Stats->lock, LW_EXCLUSIVE);
	for (i = 0; i < STATS_MAX_ROUTES; i++)
	{
		SpinLockAcquire(&Stats->routes[i].mutex);
		ClearSlot(&Stats->routes[i]);
		SpinLockRelease(&Stats->routes[i].mutex);
	}
	LWLockRelease(Stats->lock);
	PG_RETURN_VOID();
}
