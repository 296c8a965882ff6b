/*
 * batch_complete.c
 *		Settling finished requests: each operation's outcome goes to its
 *		document slot (acknowledged, retried or parked in dead_letters), the
 *		worst outcome to its route (backoff, range or container refresh), the
 *		charge to the RU budget; metadata reads move a container towards READY.
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch_internal.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"
#include "stats.h"
#include "status.h"

#define CONFIG_RETRY_MS			10000

/*
 * Log a failed (or slow) request once, with what Azure support needs: the
 * container, operations, status, RU, latency, retries and the activity id.
 * Never a header or a body that could carry a secret.
 */
static void
LogFailedRequest(SinkRoute *route, SinkRequest *sr, const char *outcome, int retries)
{
	HttpRequest *http = sr->http;
	bool		slow = strcmp(outcome, "slow") == 0;

	ereport(LOG,
			(errmsg("cosmos_sink: %s request to %s/%s%s%s",
					slow ? "slow" : "failed", route->cosmos_database, route->container,
					slow ? "" : ": ", slow ? "" : psprintf("%s (%s)", CosmosRequestProblem(http), outcome)),
			 errdetail("%d operations, status %ld/%d, %.2f RU, %ld ms, %d retries before, activity id %s",
					   sr->nops, http->status, http->substatus, http->request_charge,
					   HttpDurationMs(http), retries,
					   http->activity_id[0] ? http->activity_id : "none")));
}

/*
 * Whether a failed write may still be applied by Cosmos DB: no answer (a
 * timeout, a reset, an unreadable answer), 408 or a 5xx. A 429, 449 or 410
 * says nothing was done.
 */
static bool
OutcomeUnknown(int status)
{
	return status == 0 || status == 408 || status >= 500;
}

/* Apply the outcome of one operation to its document slot; true if it is to be resent */
static bool
ApplyOutcome(SinkRoute *route, Change *change, CosmosOutcome outcome,
			 const CosmosOpResult *result, const char *problem)
{
	DocSlot    *slot = change->slot;
	bool		retry = false;

	slot->in_flight = NULL;
	switch (outcome)
	{
		case COSMOS_SUCCESS:
		case COSMOS_SUCCESS_ABSENT:
			ChangeDone(route, change, true);
			break;
		case COSMOS_POISON:
			ChangeDeadLetter(route, change, result->status, result->substatus, problem);
			break;
		default:
			if (OutcomeUnknown(result->status))
				SlotFence(slot);
			if (slot->waiting != NULL)
				ChangeDone(route, change, true);	/* a newer state will be sent instead */
			else
			{
				change->attempts++;
				slot->waiting = change;
				retry = true;
			}
			break;
	}
	SlotSettle(slot, retry);
	return retry;
}

/* Route-level consequence of the worst outcome of a request */
static void
ApplyRouteOutcome(SinkRoute *route, SinkRequest *sr, CosmosOutcome worst,
				  const CosmosOpResult *result)
{
	switch (worst)
	{
		case COSMOS_THROTTLED:
			RouteBackoff(route, Max(result->retry_after_ms, 5), true);
			break;
		case COSMOS_TRANSIENT:
			route->failures++;
			RouteBackoff(route, BackoffMs(route->failures), false);
			break;
		case COSMOS_REROUTE:
			route->container_status = CONTAINER_NEED_RANGES;
			break;
		case COSMOS_REFRESH_CONTAINER:
			route->container_status = CONTAINER_UNKNOWN;
			break;
		case COSMOS_CONFIG_ERROR:
			route->container_status = CONTAINER_ERROR;
			RouteBackoff(route, CONFIG_RETRY_MS, false);
			StatusSetError("%s/%s: %s", route->cosmos_database, route->container,
						   CosmosRequestProblem(sr->http));
			break;
		default:
			route->failures = 0;
			break;
	}
}

/* Severity order of outcomes, to pick what a request means for its route */
static int
OutcomeRank(CosmosOutcome outcome)
{
	switch (outcome)
	{
		case COSMOS_CONFIG_ERROR:
			return 5;
		case COSMOS_REFRESH_CONTAINER:
			return 4;
		case COSMOS_REROUTE:
			return 3;
		case COSMOS_THROTTLED:
			return 2;
		case COSMOS_TRANSIENT:
			return 1;
		default:
			return 0;
	}
}

/* Why Cosmos DB refused one operation of a batch, for dead_letters */
static char *
OpProblem(HttpRequest *http, const CosmosOpResult *result)
{
	return psprintf("Cosmos DB refused the operation: HTTP %d/%d (request activity id %s)",
					result->status, result->substatus,
					http->activity_id[0] ? http->activity_id : "none");
}

/* A batch or bulk request finished: settle every operation */
static void
CompleteWrite(SinkRequest *sr)
{
	SinkRoute  *route = sr->route;
	HttpRequest *http = sr->http;
	CosmosOpResult *results = palloc0(sizeof(CosmosOpResult) * sr->nops);
	bool		per_op = http->status == 200 || http->status == 207;
	CosmosOutcome worst = COSMOS_SUCCESS;
	int			worst_index = 0;
	bool		acked = false;
	int			max_attempts = 0;
	RequestStats rs = {route->route_id, route->relid, sr->nops};
	int			i;

	/* a whole request refused: split it to find the operation at fault, don't park all */
	bool		too_large = !per_op && (http->status == 413 || http->status == 400) && sr->nops > 1;

	CosmosOpResults(http, sr->nops, results);
	if (too_large)
		route->ops_limit = Max(1, sr->nops / 2);	/* split, don't park: no op is at fault */
	else if (per_op && route->ops_limit > 0)
		route->ops_limit++;		/* grow back slowly */
	for (i = 0; i < sr->nops; i++)
	{
		Change	   *change = sr->ops[i];
		CosmosOpKind kind = change->kind == RECORD_UPSERT ? COSMOS_OP_UPSERT : COSMOS_OP_DELETE;
		CosmosOutcome outcome = too_large ? COSMOS_DEPENDENT :
			CosmosClassify(results[i].status, results[i].substatus, kind, !per_op);

		if (OutcomeRank(outcome) > OutcomeRank(worst))
		{
			worst = outcome;
			worst_index = i;
		}
		acked |= outcome == COSMOS_SUCCESS || outcome == COSMOS_SUCCESS_ABSENT;
		if (outcome == COSMOS_SUCCESS || outcome == COSMOS_SUCCESS_ABSENT)
			(change->kind == RECORD_UPSERT ? rs.upserts++ : rs.deletes++);
		rs.throttled |= outcome == COSMOS_THROTTLED;
		max_attempts = Max(max_attempts, change->attempts);
		if (ApplyOutcome(route, change, outcome, &results[i],
						 outcome != COSMOS_POISON ? NULL : per_op ? OpProblem(http, &results[i]) :
						 CosmosRequestProblem(http)))
			rs.retries++;
	}
	rs.request_charge = http->request_charge;
	rs.duration_ms = HttpDurationMs(http);
	StatsRecordRequest(&rs);
	AccountCharge(route, sr, per_op);
	AdaptWindow(route, rs.throttled);
	if (acked)
		CosmosSinkState->last_ack_at = GetCurrentTimestamp();
	if (worst != COSMOS_SUCCESS)
		LogFailedRequest(route, sr, CosmosOutcomeName(worst), max_attempts);
	else if (CosmosSinkLogMinDurationMs >= 0 && rs.duration_ms >= CosmosSinkLogMinDurationMs)
		LogFailedRequest(route, sr, "slow", max_attempts);
	ApplyRouteOutcome(route, sr, worst, &results[worst_index]);
	if (worst == COSMOS_SUCCESS && !BatchRouteErrors())
		StatusClearError();
	pfree(results);
}

/* Mark a container unusable for now, with the reason in status.last_error */
static void
ContainerFailed(SinkRoute *route, const char *fmt, const char *detail)
{
	char	   *problem = psprintf(fmt, route->cosmos_database, route->container, detail);

	route->container_status = CONTAINER_ERROR;
	RouteBackoff(route, CONFIG_RETRY_MS, false);
	StatusSetError("%s", problem);
	ereport(LOG, (errmsg("cosmos_sink: %s", problem)));
	if (route->container_error)
		pfree(route->container_error);
	route->container_error = MemoryContextStrdup(BatchContext, problem);
}

/* Check the container's partition key paths against the route's columns */
static char *
PartitionKeyMismatch(SinkRoute *route)
{
	StringInfoData want;
	bool		same = route->pk_def.npaths == route->npk;
	int			i;

	initStringInfo(&want);
	for (i = 0; i < route->npk; i++)
	{
		appendStringInfo(&want, "%s/%s", i ? ", " : "", route->pk_columns[i]);
		if (same && strcmp(route->pk_def.paths[i] + 1, route->pk_columns[i]) != 0)
			same = false;
	}
	if (same)
		return NULL;
	return psprintf("route %s wants partition key %s but the container has %s%s%s",
					route->table_name, want.data, route->pk_def.paths[0],
					route->pk_def.npaths > 1 ? ", " : "",
					route->pk_def.npaths > 1 ? route->pk_def.paths[1] : "");
}

/* A metadata read finished: move the container towards READY */
static void
CompleteMetadata(SinkRequest *sr)
{
	SinkRoute  *route = sr->route;
	HttpRequest *http = sr->http;
	char	   *errmsg = NULL;
	CosmosOutcome outcome;
	MemoryContext old;

	if (http->status == 200)
	{
		/* the ranges live as long as the route */
		old = MemoryContextSwitchTo(BatchContext);
		if (sr->kind == SINK_REQUEST_CONTAINER)
		{
			if (!CosmosParseContainer(http->response, http->response_len, &route->pk_def, &errmsg))
				ContainerFailed(route, "%s/%s: unreadable container definition: %s", errmsg);
			else if ((errmsg = PartitionKeyMismatch(route)) != NULL)
				ContainerFailed(route, "%s/%s: %s", errmsg);
			else if (OfferAfterContainer(route, http->response, http->response_len))
				route->container_status = CONTAINER_NEED_OFFER;
			else
				route->container_status = CONTAINER_NEED_RANGES;
		}
		else if (!CosmosParsePkRanges(http->response, http->response_len, &route->ranges,
									  &route->nranges, &errmsg))
			ContainerFailed(route, "%s/%s: unreadable partition key ranges: %s", errmsg);
		else
			route->container_status = CONTAINER_READY;
		MemoryContextSwitchTo(old);
		return;
	}
	outcome = CosmosClassify(http->status, http->substatus, COSMOS_OP_UPSERT, true);
	if (outcome == COSMOS_CONFIG_ERROR || outcome == COSMOS_POISON)
	{
		ContainerFailed(route, http->status == 404 ?
						"%s/%s: container not found: %s" : "%s/%s: %s",
						CosmosRequestProblem(http));
		return;
	}
	route->container_status = sr->kind == SINK_REQUEST_CONTAINER ?
		CONTAINER_UNKNOWN : CONTAINER_NEED_RANGES;
	LogFailedRequest(route, sr, CosmosOutcomeName(outcome), route->failures);
	route->failures++;
	StatusSetError("%s/%s: %s", route->cosmos_database, route->container,
				   CosmosRequestProblem(http));
	if (route->failures >= 3)
		route->container_status = CONTAINER_ERROR;	/* unreachable: say so in state */
	RouteBackoff(route, outcome == COSMOS_THROTTLED ? Max(http->retry_after_ms, 5) :
				 BackoffMs(route->failures), outcome == COSMOS_THROTTLED);
}

/* A request finished: account for it and settle what it carried */
void
BatchComplete(HttpRequest *http)
{
	SinkRequest *sr = http->owner;

	if (sr->kind != SINK_REQUEST_OFFER)
		sr->route->requests_in_flight--;
	if (sr->kind == SINK_REQUEST_BATCH || sr->kind == SINK_REQUEST_BULK)
		CompleteWrite(sr);
	else if (sr->kind == SINK_REQUEST_OFFER)
		OfferComplete(sr);
	else
		CompleteMetadata(sr);
	HttpRequestFree(http);
	if (sr->ops)
		pfree(sr->ops);
	pfree(sr);
}
