/*
 * batch_budget.c
 *		Pacing of the batcher's requests: the client-side RU budget
 *		(cosmos_sink.max_ru_per_second, a token bucket charged with each
 *		request's expected cost and corrected by its real charge), adaptive
 *		concurrency per route (AIMD on 429s) and backoff after failures.
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "batch_internal.h"
#include "cosmos_sink.h"

#define BACKOFF_BASE_MS			100
#define BACKOFF_MAX_MS			30000

static double RuTokens = 0;		/* client-side RU budget (max_ru_per_second) */
static TimestampTz RuRefilledAt = 0;

/* Burst allowed by the RU budget, in seconds of budget */
#define RU_BURST_SECONDS	0.1

/* Jittered exponential backoff after consecutive failures */
long
BackoffMs(int failures)
{
	double		ms = BACKOFF_BASE_MS * pow(2.0, Min(failures, 10));

	ms = Min(ms, BACKOFF_MAX_MS);
	return (long) (ms / 2 + pg_prng_double(&pg_global_prng_state) * ms / 2);
}

/* Hold a route's requests for ms */
void
RouteBackoff(SinkRoute *route, long ms, bool throttled)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	if (until > route->resume_at)
		route->resume_at = until;
	route->throttled = throttled;
}

/* Refill the RU budget's bucket for the time passed */
static void
RuRefill(void)
{
	TimestampTz now = GetCurrentTimestamp();
	double		budget = CosmosSinkMaxRuPerSecond;

	if (RuRefilledAt != 0)
		RuTokens = Min(budget * RU_BURST_SECONDS,
					   RuTokens + budget * (double) (now - RuRefilledAt) / USECS_PER_SEC);
	RuRefilledAt = now;
}

/* Whether the client-side RU budget lets another request go now */
static bool
RuBudgetAllows(void)
{
	if (CosmosSinkMaxRuPerSecond <= 0)
		return true;
	RuRefill();
	return RuTokens > 0;
}

/*
 * Whether the budget has saved up for a full request of this route (or as
 * much as the bucket holds): small slices would multiply requests.
 */
bool
RuBudgetAllowsBatch(SinkRoute *route)
{
	double		want;

	if (CosmosSinkMaxRuPerSecond <= 0)
		return true;
	if (!RuBudgetAllows())
		return false;
	want = Min(Min(route->nready, RouteOpsLimit(route)) * route->ru_per_op,
			   CosmosSinkMaxRuPerSecond * RU_BURST_SECONDS);
	return RuTokens >= want;
}

/* Milliseconds until the RU budget has saved up for a full request again */
static long
RuWaitMs(void)
{
	double		want;

	if (CosmosSinkMaxRuPerSecond <= 0)
		return 0;
	RuRefill();
	want = CosmosSinkMaxRuPerSecond * RU_BURST_SECONDS;
	if (RuTokens >= want)
		return 0;
	return (long) ceil((want - RuTokens) * 1000.0 / CosmosSinkMaxRuPerSecond) + 1;
}

/* Set a request's expected charge aside from the RU budget; returns it */
double
RuReserve(SinkRoute *route, int nops)
{
	double		reserved = nops * route->ru_per_op;

	if (CosmosSinkMaxRuPerSecond > 0)
		RuTokens -= reserved;
	return reserved;
}

/* Operations to take now: the free request slots, and what the RU budget can pay for */
int
DispatchLimit(SinkRoute *route, int free_requests)
{
	int			max = free_requests * RouteOpsLimit(route);

	if (CosmosSinkMaxRuPerSecond > 0)
		max = Min(max, Max(1, (int) (RuTokens / Max(route->ru_per_op, 0.1)) + 1));
	return max;
}

/*
 * The most RU a request can plausibly cost: 50 per KB of body and 50 per op,
 * several times Cosmos DB's real write charges. A larger figure from the
 * endpoint is not believed, so it cannot starve the budget.
 */
static double
PlausibleCharge(SinkRequest *sr)
{
	return 50.0 * ((double) sr->http->body_len / 1024.0 + sr->nops);
}

/* Replace the request's reserved RU by its real charge; learn the cost per op */
void
AccountCharge(SinkRoute *route, SinkRequest *sr, bool per_op)
{
	double		charge = Min(sr->http->request_charge, PlausibleCharge(sr));

	/*
	 * Debt is capped at one second of budget: a charge far above what was
	 * reserved (or an endpoint's absurd figure) pauses sending for at most a
	 * second; the service's own 429s correct a real overrun.
	 */
	if (CosmosSinkMaxRuPerSecond > 0)
		RuTokens = Max(RuTokens + sr->ru_reserved - charge, -(double) CosmosSinkMaxRuPerSecond);
	if (per_op && charge > 0 && sr->nops > 0)
		route->ru_per_op = 0.8 * route->ru_per_op + 0.2 * (charge / sr->nops);
}

/*
 * Adaptive concurrency (AIMD): a 429 halves the requests a route may have
 * in flight; each full window of successes lets one more go, up to
 * cosmos_sink.max_in_flight.
 */
void
AdaptWindow(SinkRoute *route, bool throttled)
{
	route->window = Min(route->window, CosmosSinkMaxInFlight);
	if (throttled)
	{
		route->window = Max(1, route->window / 2);
		route->window_successes = 0;
	}
	else if (++route->window_successes >= route->window)
	{
		route->window = Min(route->window + 1, CosmosSinkMaxInFlight);
		route->window_successes = 0;
	}
}

/* Whether some route is waiting out a 429 */
bool
BatchThrottled(void)
{
	HASH_SEQ_STATUS status;
	SinkRoute  *route;
	TimestampTz now = GetCurrentTimestamp();
	bool		throttled = false;

	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
		throttled |= route->throttled && route->resume_at > now;
	return throttled;
}

/* How long the worker may sleep before a route's backoff ends (at most max_ms) */
long
BatchNextWakeMs(long max_ms)
{
	HASH_SEQ_STATUS status;
	SinkRoute  *route;
	TimestampTz now = GetCurrentTimestamp();
	long		ru_wait = RuWaitMs();

	max_ms = BatchFenceWaitMs(max_ms);
	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
	{
		if (route->nready == 0 || route->requests_in_flight >= route->window ||
			(route->container_status != CONTAINER_READY && route->requests_in_flight > 0))
			continue;
		if (route->resume_at <= now)
			max_ms = Min(max_ms, ru_wait);
		else
			max_ms = Min(max_ms, Max(ru_wait, TimestampDifferenceMilliseconds(now, route->resume_at)));
	}
	return max_ms;
}
