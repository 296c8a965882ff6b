/*
 * batch_dispatch.c
 *		Sending what is ready: the ready slots of a route are grouped into
 *		transactional batches (many upserts of one logical partition) or bulk
 *		requests per physical partition range, within the route's window, the
 *		RU budget and the request size limits; container metadata is read
 *		first when needed.
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch_internal.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"

/* A logical partition with at least this many ready changes gets its own batch */
#define BATCH_MIN_SAME_PK		8
#define HOLD_BACK_MAX_MS		50		/* longest wait for a fuller request while decoding */

/* Submit a request for a route */
void
SubmitRequest(SinkRoute *route, SinkRequestKind kind, HttpRequest *http, Change **ops, int nops)
{
	SinkRequest *sr = MemoryContextAllocZero(BatchContext, sizeof(SinkRequest));

	sr->kind = kind;
	sr->route = route;
	sr->http = http;
	sr->ops = ops;
	sr->nops = nops;
	/* set the expected charge aside now; the real one replaces it when known */
	sr->ru_reserved = RuReserve(route, nops, &sr->ru_bucket);
	http->owner = sr;
	HttpSubmit(http);
	if (kind != SINK_REQUEST_OFFER)
		route->requests_in_flight++;	/* offer reads hold no write back (batch_offer.c) */
}

/* Read the container definition or its ranges when needed */
static void
DispatchMetadata(SinkRoute *route, TimestampTz now)
{
	if (route->requests_in_flight > 0 || now < route->resume_at)
		return;
	if (route->container_status == CONTAINER_UNKNOWN || route->container_status == CONTAINER_ERROR)
	{
		route->container_status = CONTAINER_FETCHING;
		SubmitRequest(route, SINK_REQUEST_CONTAINER, CosmosContainerRequest(route), NULL, 0);
	}
	else if (route->container_status == CONTAINER_NEED_OFFER && !route->offer_reading)
	{
		route->container_status = CONTAINER_FETCHING;
		OfferRead(route, true);
	}
	else if (route->container_status == CONTAINER_NEED_RANGES)
	{
		route->container_status = CONTAINER_FETCHING;
		SubmitRequest(route, SINK_REQUEST_PKRANGES, CosmosPkRangesRequest(route), NULL, 0);
	}
}

/* Whether two changes have the same partition key */
static inline bool
SamePk(const Change *a, const Change *b)
{
	return a->pk_hash == b->pk_hash && a->pk_len == b->pk_len &&
		memcmp(a->pk, b->pk, a->pk_len) == 0;
}

/* Order changes so that equal partition keys are adjacent (by hash, then value) */
static int
ComparePk(const void *a, const void *b)
{
	const Change *ca = *(Change *const *) a;
	const Change *cb = *(Change *const *) b;

	if (ca->pk_hash != cb->pk_hash)
		return ca->pk_hash < cb->pk_hash ? -1 : 1;
	return strcmp(ca->pk, cb->pk);
}

/* Physical range of a change (0 when the container has one range) */
static int
ChangeRange(SinkRoute *route, Change *change)
{
	char		epk[COSMOS_EPK_HEX_LEN * COSMOS_MAX_PK_PATHS * 4 + 1];
	char	   *errmsg;
	int			idx;

	if (route->nranges <= 1)
		return 0;
	if (!CosmosEffectivePartitionKey(&route->pk_def, change->pk, change->pk_len,
									 epk, sizeof(epk), &errmsg))
		return 0;				/* a bad key fails in the request and is parked */
	idx = CosmosFindPkRange(route->ranges, route->nranges, epk);
	return idx < 0 ? 0 : idx;
}

/* Order changes by physical range (computed beforehand) */
static int
CompareRange(const void *a, const void *b)
{
	return (*(Change *const *) a)->range - (*(Change *const *) b)->range;
}

/* Operations per request for a route: batch_max_ops, or less after a 413 */
int
RouteOpsLimit(SinkRoute *route)
{
	return route->ops_limit > 0 ? Min(route->ops_limit, CosmosSinkBatchMaxOps) : CosmosSinkBatchMaxOps;
}

/* A change as an operation of a request body */
static void
ChangeOp(const Change *change, CosmosOp *op)
{
	op->kind = change->kind == RECORD_UPSERT ? COSMOS_OP_UPSERT : COSMOS_OP_DELETE;
	op->id = change->id;
	op->id_len = change->id_len;
	op->pk_json = change->pk;
	op->pk_len = change->pk_len;
	op->doc = change->doc;
	op->doc_len = change->doc_len;
}

/*
 * Body bytes to reserve for the request starting at ops[0]: its changes up to
 * max_ops, the key or range break and the size limit (one allocation, rarely
 * regrown)
 */
static int
BodyEstimate(Change **ops, int n, int max_ops, bool atomic)
{
	Size		bytes = 2;

	for (int i = 0; i < Min(n, max_ops) && bytes < (Size) CosmosSinkBatchMaxBytes; i++)
	{
		if (i > 0 && (atomic ? !SamePk(ops[i], ops[0]) : ops[i]->range != ops[0]->range))
			break;
		bytes += ops[i]->doc_len + 2 * (ops[i]->id_len + ops[i]->pk_len) + 96;
	}
	return (int) Min(bytes, (Size) CosmosSinkBatchMaxBytes + 1024);
}

/*
 * Send ops[0..n) as requests of at most batch_max_ops operations and
 * batch_max_bytes of body, each body built once, op by op. Atomic: runs of
 * one partition key (ops sorted by key); bulk: runs of one range.
 */
static void
SubmitChunks(SinkRoute *route, Change **ops, int n, bool atomic)
{
	int			start = 0;
	int			max_ops = RouteOpsLimit(route);

	while (start < n)
	{
		int			end = start;
		int			range = atomic ? 0 : ops[start]->range;
		Change	  **chunk;
		StringInfoData body;
		CosmosOp	op;

		/* the request owns the body: it lives in BatchContext, not the loop's memory */
		body.maxlen = BodyEstimate(ops + start, n - start, max_ops, atomic);
		body.data = MemoryContextAlloc(BatchContext, body.maxlen);
		resetStringInfo(&body);
		CosmosBodyStart(&body);
		while (end < n && end - start < max_ops)
		{
			if (atomic && !SamePk(ops[end], ops[start]))
				break;
			if (!atomic && ops[end]->range != range)
				break;
			ChangeOp(ops[end], &op);
			if (!CosmosBodyAddOp(&body, &op, CosmosSinkBatchMaxBytes))
				break;
			end++;
		}
		CosmosBodyFinish(&body);
		chunk = MemoryContextAlloc(BatchContext, sizeof(Change *) * (end - start));
		memcpy(chunk, ops + start, sizeof(Change *) * (end - start));
		SubmitRequest(route, atomic ? SINK_REQUEST_BATCH : SINK_REQUEST_BULK,
					  CosmosWriteRequest(route, body.data, body.len, atomic,
										 ops[start]->pk, ops[start]->pk_len,
										 atomic ? NULL : route->ranges[range].id),
					  chunk, end - start);
		start = end;
	}
}

/* Take up to max ready changes of a route, marking them in flight */
static int
TakeReady(SinkRoute *route, Change **ops, int max)
{
	int			n = 0;

	while (n < max && !dlist_is_empty(&route->ready))
	{
		DocSlot    *slot = dlist_container(DocSlot, ready_node, dlist_pop_head_node(&route->ready));

		slot->queued = false;
		route->nready--;
		slot->in_flight = slot->waiting;
		slot->waiting = NULL;
		ops[n++] = slot->in_flight;
	}
	return n;
}

/*
 * Build and submit the requests of one route, within the free request slots.
 * Upserts of a logical partition with many ready changes go in transactional
 * batches; deletes never do (a delete of a document that never reached Cosmos
 * DB answers 404 and would fail its whole atomic batch), so they and the
 * upserts of small partitions go in bulk requests per physical range.
 */
static void
DispatchWrites(SinkRoute *route, int free_requests)
{
	int			max = DispatchLimit(route, free_requests);
	Change	  **ops = palloc(sizeof(Change *) * Min(max, route->nready));
	Change	  **upserts;
	Change	  **bulk;
	int			n = TakeReady(route, ops, max);
	int			nupserts = 0;
	int			nbulk = 0;
	int			i = 0;

	upserts = palloc(sizeof(Change *) * n);
	bulk = palloc(sizeof(Change *) * n);
	for (i = 0; i < n; i++)
	{
		if (ops[i]->kind == RECORD_UPSERT)
			upserts[nupserts++] = ops[i];
		else
			bulk[nbulk++] = ops[i];
	}
	qsort(upserts, nupserts, sizeof(Change *), ComparePk);
	i = 0;
	while (i < nupserts)
	{
		int			j = i + 1;

		while (j < nupserts && SamePk(upserts[j], upserts[i]))
			j++;
		if (j - i >= BATCH_MIN_SAME_PK)
			SubmitChunks(route, upserts + i, j - i, true);
		else
		{
			memcpy(bulk + nbulk, upserts + i, sizeof(Change *) * (j - i));
			nbulk += j - i;
		}
		i = j;
	}
	if (nbulk > 0)
	{
		for (i = 0; i < nbulk; i++)
			bulk[i]->range = ChangeRange(route, bulk[i]);
		qsort(bulk, nbulk, sizeof(Change *), CompareRange);
		SubmitChunks(route, bulk, nbulk, false);
	}
	pfree(bulk);
	pfree(upserts);
	pfree(ops);
}

/*
 * Whether to hold a route's changes back while decoding goes on: until there
 * is enough for about a full request per range, and half the route's window
 * is free (or nothing is in flight), so that requests go out full rather than
 * one small request per freed slot.
 */
static bool
HoldBack(SinkRoute *route, int free_requests, TimestampTz now)
{
	if (route->nready < RouteOpsLimit(route) * Max(1, route->nranges))
		return !TimestampDifferenceExceeds(route->last_sent_at, now, HOLD_BACK_MAX_MS);
	return route->requests_in_flight > 0 && free_requests < Max(1, route->window / 2);
}

/*
 * Submit what can be sent now; returns the number of requests in flight.
 * eager: send every ready change (decoding has nothing more for now);
 * otherwise (called from inside decoding) only when requests can go out full.
 */
int
BatchDispatch(bool eager)
{
	HASH_SEQ_STATUS status;
	SinkRoute  *route;
	TimestampTz now = GetCurrentTimestamp();

	BatchReleaseFences();
	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
	{
		int			free_requests = CosmosSinkMaxInFlight - HttpInFlight();

		OfferDispatch(route, now);
		if (route->nready == 0)
			continue;
		if (route->container_status != CONTAINER_READY)
		{
			DispatchMetadata(route, now);
			continue;
		}
		free_requests = Min(free_requests, route->window - route->requests_in_flight);
		if (now < route->resume_at || free_requests <= 0 || !RuBudgetAllowsBatch(route))
			continue;
		if (!eager && HoldBack(route, free_requests, now))
			continue;
		route->throttled = false;
		route->last_sent_at = now;
		DispatchWrites(route, free_requests);
	}
	return HttpInFlight();
}
