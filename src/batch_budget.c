/*
 * batch_budget.c
 *		Pacing of the batcher's requests: the client-side RU budget
 *		(cosmos_sink.max_ru_per_second: token buckets, one for a fixed figure or
 *		one per offer under 'auto', charged with each request's expected cost
 *		and corrected by its real charge), adaptive
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

/*
 * A token bucket of the client-side RU budget: one for a fixed
 * max_ru_per_second (shared by every route), one per offer under 'auto'
 * (shared by the routes to containers under that offer)
 */
typedef struct RuBucket
{
	char		key[sizeof(((CosmosOffer *) NULL)->resource_id)];	/* the offer's resource id */
	double		tokens;
	TimestampTz refilled_at;
} RuBucket;

static RuBucket FixedBucket;
static HTAB *OfferBuckets = NULL;

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

/* The bucket of an offer, made on first use */
static RuBucket *
OfferBucket(const char *resource_id)
{
	RuBucket   *bucket;
	bool		found;

	if (OfferBuckets == NULL)
	{
		HASHCTL		ctl = {.keysize = sizeof(FixedBucket.key), .entrysize = sizeof(RuBucket),
		.hcxt = BatchContext};

		OfferBuckets = hash_create("cosmos_sink RU budgets", 16, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	bucket = hash_search(OfferBuckets, resource_id, HASH_ENTER, &found);
	if (!found)
	{
		bucket->tokens = 0;
		bucket->refilled_at = 0;
	}
	return bucket;
}

/* The bucket pacing a route and its rate in RU/s; NULL when it has no budget */
static RuBucket *
RouteBucket(SinkRoute *route, double *rate)
{
	if (!CosmosSinkRuBudgetAuto)
	{
		*rate = CosmosSinkMaxRuPerSecond;
		return *rate > 0 ? &FixedBucket : NULL;
	}
	*rate = OfferBudget(route);
	if (*rate <= 0)
		return NULL;
	if (route->bucket == NULL || strcmp(route->bucket->key, route->offer.resource_id) != 0)
		route->bucket = OfferBucket(route->offer.resource_id);
	return route->bucket;
}

/* Refill a bucket for the time passed */
static void
RuRefill(RuBucket *bucket, double rate)
{
	TimestampTz now = GetCurrentTimestamp();

	if (bucket->refilled_at != 0)
		bucket->tokens = Min(rate * RU_BURST_SECONDS,
							 bucket->tokens + rate * (double) (now - bucket->refilled_at) / USECS_PER_SEC);
	bucket->refilled_at = now;
}

/*
 * Whether the budget has saved up for a full request of this route (or as
 * much as the bucket holds): small slices would multiply requests.
 */
bool
RuBudgetAllowsBatch(SinkRoute *route)
{
	double		rate;
	RuBucket   *bucket = RouteBucket(route, &rate);
	double		want;

	if (bucket == NULL)
		return true;
	RuRefill(bucket, rate);
	if (bucket->tokens <= 0)
		return false;
	want = Min(Min(route->nready, RouteOpsLimit(route)) * route->ru_per_op,
			   rate * RU_BURST_SECONDS);
	return bucket->tokens >= want;
}

/* Milliseconds until a route's budget has saved up for a full request again */
static long
RuWaitMs(SinkRoute *route)
{
	double		rate;
	RuBucket   *bucket = RouteBucket(route, &rate);
	double		want;

	if (bucket == NULL)
		return 0;
	RuRefill(bucket, rate);
	want = rate * RU_BURST_SECONDS;
	if (bucket->tokens >= want)
		return 0;
	return (long) ceil((want - bucket->tokens) * 1000.0 / rate) + 1;
}

/* Set a request's expected charge aside from the route's budget; returns it, and the bucket */
double
RuReserve(SinkRoute *route, int nops, RuBucket **bucket)
{
	double		rate;
	double		reserved = nops * route->ru_per_op;

	*bucket = RouteBucket(route, &rate);
	if (*bucket != NULL)
		(*bucket)->tokens -= reserved;
	return reserved;
}

/* Operations to take now: the free request slots, and what the RU budget can pay for */
int
DispatchLimit(SinkRoute *route, int free_requests)
{
	double		rate;
	RuBucket   *bucket = RouteBucket(route, &rate);
	int			max = free_requests * RouteOpsLimit(route);

	if (bucket != NULL)
		max = Min(max, Max(1, (int) (bucket->tokens / Max(route->ru_per_op, 0.1)) + 1));
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
	double		rate;
	RuBucket   *bucket = sr->ru_bucket;	/* the one that paid, whatever the route's is now */

	(void) RouteBucket(route, &rate);

	/*
	 * Debt is capped at one second of budget: a charge far above what was
	 * reserved (or an endpoint's absurd figure) pauses sending for at most a
	 * second; the service's own 429s correct a real overrun.
	 */
	if (bucket != NULL)
		bucket->tokens = Max(bucket->tokens + sr->ru_reserved - charge, -rate);
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
		OfferNoteThrottled(route);
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

	max_ms = BatchFenceWaitMs(max_ms);
	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
	{
		long		ru_wait;

		if (route->nready == 0 || route->requests_in_flight >= route->window ||
			(route->container_status != CONTAINER_READY && route->requests_in_flight > 0))
			continue;
		ru_wait = RuWaitMs(route);
		if (route->resume_at <= now)
			max_ms = Min(max_ms, ru_wait);
		else
			max_ms = Min(max_ms, Max(ru_wait, TimestampDifferenceMilliseconds(now, route->resume_at)));
	}
	return max_ms;
}
