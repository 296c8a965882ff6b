/*
 * stats.h
 *		Per-route counters in shared memory behind cosmos_sink.container_stats:
 *		operations, requests, throttling, retries, dead letters, exact RU spend,
 *		RU/s over the last minute and a request latency histogram.
 */
#ifndef COSMOS_SINK_STATS_H
#define COSMOS_SINK_STATS_H

#include "postgres.h"

#include "datatype/timestamp.h"

#define STATS_MAX_ROUTES		256
#define STATS_RU_WINDOW			60	/* seconds of RU/s history */
#define STATS_LATENCY_BUCKETS	32	/* power-of-two milliseconds */
#define STATS_SOURCE_LEN		192 /* where the RU budget comes from, in words */

/* What one finished write request contributes to its route's counters */
typedef struct RequestStats
{
	int32		route_id;
	Oid			relid;
	int			ops;			/* operations the request carried */
	int			upserts;		/* acknowledged */
	int			deletes;		/* acknowledged (404 included) */
	int			retries;		/* operations to send again */
	bool		throttled;		/* answered 429 (whole request or an op) */
	double		request_charge; /* x-ms-request-charge */
	long		duration_ms;
} RequestStats;

extern void StatsShmemRequest(void);
extern void StatsShmemStartup(void);
extern void StatsRecordRequest(const RequestStats *rs);
extern void StatsRecordDeadLetters(int32 route_id, Oid relid, int n);
extern void StatsRecordTruncate(int32 route_id, Oid relid);
extern void StatsRecordSkipped(int32 route_id, Oid relid);
extern void StatsRecordBudget(int32 route_id, Oid relid, double provisioned, double budget,
							  const char *source);

#endif							/* COSMOS_SINK_STATS_H */
