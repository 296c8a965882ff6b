/*
 * batch_offer.c
 *		The RU budget that follows the provisioned throughput
 *		(cosmos_sink.max_ru_per_second = 'auto'). A container's offer (its own
 *		throughput, or its database's shared one; autoscale counts its maximum)
 *		is read after the container definition, again every few minutes and
 *		after a storm of 429s; cosmos_sink.ru_share of it paces every route
 *		under that offer (batch_budget.c). Serverless accounts and identities
 *		that may not read offers get no budget and say why: container_stats
 *		shows it, and last_error carries a standing warning.
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch_internal.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"
#include "stats.h"
#include "status.h"

#define OFFER_REFRESH_MS	(5 * 60 * 1000) /* the offer may be changed at any time */
#define OFFER_RETRY_MS		(30 * 1000) /* after a transient failure */
#define STORM_WINDOW_MS		10000	/* 429s counted over this long ... */
#define STORM_THROTTLES		5		/* ... this many: the offer may have shrunk */
#define STORM_MIN_AGE_MS	10000	/* an offer read this recently is not read again */

/*
 * The budget in force is this fraction of the share: Cosmos DB counts RU in
 * 1-second windows, and a token bucket's pacing can put one request more
 * into a window than its rate.
 */
#define RU_WINDOW_HEADROOM	0.95

/* Routes whose credentials may not read offers (the standing warning shows while any) */
static int	ForbiddenRoutes = 0;

/* RU/s the route may spend under 'auto' (0: no budget) */
double
OfferBudget(SinkRoute *route)
{
	if (route->offer.level == COSMOS_OFFER_NONE)
		return 0;
	return route->offer.throughput * CosmosSinkRuShare * RU_WINDOW_HEADROOM;
}

/* Count the route in or out of those that may not read offers; the warning goes with the last */
static void
OfferSetForbidden(SinkRoute *route, bool forbidden)
{
	if (route->offer_forbidden == forbidden)
		return;
	route->offer_forbidden = forbidden;
	ForbiddenRoutes += forbidden ? 1 : -1;
	if (ForbiddenRoutes == 0)
		StatusClearWarning();
}

/* No budget for the route, and why (copied) */
void
OfferSetNone(SinkRoute *route, const char *why)
{
	memset(&route->offer, 0, sizeof(route->offer));
	route->offer.level = COSMOS_OFFER_NONE;
	if (route->offer_problem)
		pfree(route->offer_problem);
	route->offer_problem = MemoryContextStrdup(BatchContext, why);
	route->offer_version++;
}

/*
 * A container was read: keep its resource ids and say whether its offer is
 * to be read next (under 'auto'). Unreadable ids mean no budget, and no new
 * try before the next refresh.
 */
bool
OfferAfterContainer(SinkRoute *route, const char *body, size_t len)
{
	MemoryContext parse;
	MemoryContext old;
	char	   *coll_rid;
	char	   *db_rid;
	char	   *problem;
	bool		ok;

	if (!CosmosSinkRuBudgetAuto)
		return false;
	/* what the parse leaves behind goes with its context */
	parse = AllocSetContextCreate(CurrentMemoryContext, "cosmos_sink offer parse",
								  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(parse);
	ok = CosmosParseResourceIds(body, len, &coll_rid, &db_rid, &problem);
	MemoryContextSwitchTo(old);
	if (ok)
	{
		if (route->coll_rid)
			pfree(route->coll_rid);
		if (route->db_rid)
			pfree(route->db_rid);
		route->coll_rid = MemoryContextStrdup(BatchContext, coll_rid);
		route->db_rid = MemoryContextStrdup(BatchContext, db_rid);
	}
	else
	{
		OfferSetNone(route, psprintf("the container's resource id is unreadable: %s", problem));
		route->offer_due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), OFFER_REFRESH_MS);
	}
	MemoryContextDelete(parse);
	return ok;
}

/*
 * Send the offers query of a route's container and database. Not counted in
 * the route's requests in flight: a slow offers answer never holds writes or
 * a ranges re-read back. chained: read right after the container, before
 * the ranges.
 */
void
OfferRead(SinkRoute *route, bool chained)
{
	MemoryContext old = MemoryContextSwitchTo(BatchContext);
	char	   *body = CosmosOfferQueryBody(route->coll_rid, route->db_rid);

	MemoryContextSwitchTo(old);
	route->offer_reading = true;
	route->offer_chained = chained;
	SubmitRequest(route, SINK_REQUEST_OFFER, CosmosOfferRequest(body, strlen(body)), NULL, 0);
}

/* The offers cannot be read with these credentials: no budget, a standing warning */
static void
OfferForbidden(SinkRoute *route, HttpRequest *http)
{
	char	   *problem = CosmosRequestProblem(http);

	OfferSetNone(route, psprintf("the credentials may not read offers (%s)", problem));
	OfferSetForbidden(route, true);
	StatusSetWarning("cosmos_sink.max_ru_per_second = 'auto' cannot read the provisioned throughput of %s/%s, "
					 "so there is no client-side RU budget (429s still slow the sink down): use the account key, "
					 "or set max_ru_per_second to a number of RU/s. Cosmos DB said: %s",
					 route->cosmos_database, route->container, problem);
}

/* Whether an offers read may succeed if tried again soon, the budget read last staying */
static bool
OfferReadTransient(int status)
{
	return status == 0 || status == 401 || status == 408 || status == 429 || status >= 500;
}

/* Log a failed offers read once per kind of failure, not at every try */
static void
OfferLogFailure(SinkRoute *route, HttpRequest *http)
{
	if (route->offer_failed_status == http->status)
		return;
	route->offer_failed_status = http->status;
	ereport(LOG,
			(errmsg("cosmos_sink: could not read the offer of %s/%s: %s",
					route->cosmos_database, route->container, CosmosRequestProblem(http))));
}

/* An offers query finished: the budget follows what it says */
void
OfferComplete(SinkRequest *sr)
{
	SinkRoute  *route = sr->route;
	HttpRequest *http = sr->http;
	TimestampTz now = GetCurrentTimestamp();
	CosmosOffer offer;
	char	   *problem;
	long		next_ms = OFFER_REFRESH_MS;

	route->offer_reading = false;
	route->offer_read_at = now;
	if (route->offer_chained && route->container_status == CONTAINER_FETCHING)
		route->container_status = CONTAINER_NEED_RANGES;	/* the offer never holds writes back */
	route->offer_chained = false;
	if (http->status == 200 &&
		CosmosParseOffers(http->response, http->response_len, route->coll_rid, route->db_rid,
						  &offer, &problem))
	{
		route->offer = offer;
		if (route->offer_problem)
			pfree(route->offer_problem);
		route->offer_problem = offer.level == COSMOS_OFFER_NONE ?
			MemoryContextStrdup(BatchContext, "no offer on the container or its database") : NULL;
		route->offer_version++;
		route->offer_failed_status = 0;
		OfferSetForbidden(route, false);
		route->offer_due_at = TimestampTzPlusMilliseconds(now, next_ms);
		return;
	}
	if (http->status != 403)
		OfferSetForbidden(route, false);
	if (http->status == 200)
	{
		OfferSetNone(route, psprintf("unreadable offers answer: %s", problem));
		next_ms = OFFER_RETRY_MS;
	}
	else if (http->status == 400 && strstr(CosmosRequestProblem(http), "serverless") != NULL)
		OfferSetNone(route, "serverless account: no provisioned throughput");
	else if (http->status == 403)
		OfferForbidden(route, http);
	else if (OfferReadTransient(http->status))
		next_ms = OFFER_RETRY_MS;	/* the budget read last stays in force */
	else
		OfferSetNone(route, psprintf("offers cannot be read: %s", CosmosRequestProblem(http)));
	OfferLogFailure(route, http);
	route->offer_due_at = TimestampTzPlusMilliseconds(now, next_ms);
}

/* A write was answered 429: a storm under a budget means the offer may have shrunk */
void
OfferNoteThrottled(SinkRoute *route)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!CosmosSinkRuBudgetAuto || route->offer.level == COSMOS_OFFER_NONE)
		return;
	if (TimestampDifferenceExceeds(route->storm_since, now, STORM_WINDOW_MS))
	{
		route->storm_since = now;
		route->storm_throttles = 0;
	}
	if (++route->storm_throttles >= STORM_THROTTLES &&
		TimestampDifferenceExceeds(route->offer_read_at, now, STORM_MIN_AGE_MS))
	{
		route->offer_due_at = now;
		route->storm_throttles = 0;
	}
}

/* What container_stats shows of a route's budget: provisioned RU/s, budget, source */
static char *
BudgetSource(SinkRoute *route, double *provisioned, double *budget)
{
	int			share = (int) (CosmosSinkRuShare * 100 + 0.5);

	*provisioned = -1;
	*budget = 0;
	if (!CosmosSinkRuBudgetAuto)
	{
		*budget = CosmosSinkMaxRuPerSecond;
		return pstrdup(*budget > 0 ? "cosmos_sink.max_ru_per_second" :
					   "none (cosmos_sink.max_ru_per_second = 0)");
	}
	if (route->offer.level == COSMOS_OFFER_NONE)
		return psprintf("auto: none (%s)", route->offer_problem ? route->offer_problem :
						"provisioned throughput not read yet");
	*provisioned = route->offer.throughput;
	*budget = OfferBudget(route);
	return psprintf("auto: %d%% of %s %s%.0f RU/s", share,
					route->offer.level == COSMOS_OFFER_CONTAINER ? "the container's" :
					"the database's shared",
					route->offer.autoscale ? "autoscale maximum of " : "", route->offer.throughput);
}

/* What the shown budget depends on: settings and the offer read */
typedef struct BudgetInputs
{
	bool		automatic;
	int			fixed;
	double		share;
	CosmosOfferLevel level;
	bool		autoscale;
	double		throughput;
	uint32		offer_version;
} BudgetInputs;

/*
 * Show the route's budget in container_stats when what it depends on
 * changed (this runs on every dispatch: a few comparisons otherwise)
 */
static void
OfferShow(SinkRoute *route)
{
	BudgetInputs now = {
		.automatic = CosmosSinkRuBudgetAuto, .fixed = CosmosSinkMaxRuPerSecond,
		.share = CosmosSinkRuShare, .level = route->offer.level,
		.autoscale = route->offer.autoscale, .throughput = route->offer.throughput,
		.offer_version = route->offer_version,
	};
	BudgetInputs *shown = (BudgetInputs *) route->budget_shown;
	double		provisioned;
	double		budget;
	char	   *source;

	if (shown != NULL && shown->automatic == now.automatic && shown->fixed == now.fixed &&
		shown->share == now.share && shown->level == now.level &&
		shown->autoscale == now.autoscale && shown->throughput == now.throughput &&
		shown->offer_version == now.offer_version)
		return;
	source = BudgetSource(route, &provisioned, &budget);
	StatsRecordBudget(route->route_id, route->relid, provisioned, budget, source);
	pfree(source);
	if (shown == NULL)
		route->budget_shown = shown = MemoryContextAlloc(BatchContext, sizeof(BudgetInputs));
	*shown = now;
}

/*
 * Keep a ready route's offer current: read it when due (the container first
 * when its ids are unknown, e.g. after switching to 'auto'); drop the warning
 * when 'auto' is off
 */
void
OfferDispatch(SinkRoute *route, TimestampTz now)
{
	if (!CosmosSinkRuBudgetAuto)
		OfferSetForbidden(route, false);
	else if (route->container_status == CONTAINER_READY && !route->offer_reading &&
			 now >= route->offer_due_at)
	{
		if (route->coll_rid != NULL)
			OfferRead(route, false);
		else if (route->requests_in_flight == 0)
		{
			/* 'auto' came after the container was read: read it again */
			route->offer_due_at = TimestampTzPlusMilliseconds(now, OFFER_REFRESH_MS);
			route->container_status = CONTAINER_UNKNOWN;
		}
	}
	OfferShow(route);
}
