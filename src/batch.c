/*
 * batch.c
 *		Batching and coalescing. Each document has one slot: at most one change
 *		in flight and the newest change waiting behind it, so the last committed
 *		state wins and an older state never lands after a newer one. Ready
 *		slots of a route are grouped into transactional batches (many changes
 *		of one logical partition) or bulk requests per physical partition range.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "compat.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"
#include "deadletter.h"
#include "stats.h"
#include "status.h"

/* A logical partition with at least this many ready changes gets its own batch */
#define BATCH_MIN_SAME_PK		8
#define BACKOFF_BASE_MS			100
#define BACKOFF_MAX_MS			30000
#define CONFIG_RETRY_MS			10000
#define HOLD_BACK_MAX_MS		50		/* longest wait for a fuller request while decoding */

/* An entry of the slot table: the slot and its hash (compared before keys) */
typedef struct SlotEntry
{
	DocSlot    *slot;
	uint32		hash;
	char		status;
} SlotEntry;

/* Whether two slots (or a slot and a probe) name the same document */
static inline bool
SlotSameDocument(const DocSlot *a, const DocSlot *b)
{
	return a->route == b->route && a->id_len == b->id_len && a->pk_len == b->pk_len &&
		memcmp(a->id, b->id, a->id_len) == 0 && memcmp(a->pk, b->pk, a->pk_len) == 0;
}

#define SH_PREFIX		slots
#define SH_ELEMENT_TYPE SlotEntry
#define SH_KEY_TYPE		DocSlot *
#define SH_KEY			slot
#define SH_HASH_KEY(tb, key)	((key)->hash)
#define SH_EQUAL(tb, a, b)		SlotSameDocument(a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)		((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

static MemoryContext BatchContext = NULL;
static MemoryContext ChangeContext = NULL;	/* parent of the routes' change memory */
static HTAB *Routes = NULL;		/* route_id -> SinkRoute */
static slots_hash *Slots = NULL;	/* (route, pk, id) -> DocSlot */
static Size PendingBytes = 0;
static int64 PendingChanges = 0;
static double RuTokens = 0;		/* client-side RU budget (max_ru_per_second) */
static TimestampTz RuRefilledAt = 0;

/* Burst allowed by the RU budget, in seconds of budget */
#define RU_BURST_SECONDS	0.1
#define RU_PER_OP_GUESS		10.0

/* Create the batcher's memory and tables; once per worker process */
void
BatchInit(void)
{
	HASHCTL		ctl;

	BatchContext = AllocSetContextCreate(TopMemoryContext, "cosmos_sink pending changes",
										 ALLOCSET_DEFAULT_SIZES);
	ChangeContext = AllocSetContextCreate(BatchContext, "cosmos_sink changes",
										  ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(SinkRoute);
	ctl.hcxt = BatchContext;
	Routes = hash_create("cosmos_sink worker routes", 16, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	Slots = slots_create(BatchContext, 4096, NULL);
}

/* The route with this id, or NULL */
SinkRoute *
BatchFindRoute(int32 route_id)
{
	return hash_search(Routes, &route_id, HASH_FIND, NULL);
}

/* A copy of a length-delimited string in the batcher's memory */
static char *
CopyText(const char *s, int len)
{
	char	   *copy = MemoryContextAlloc(BatchContext, len + 1);

	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/* Read the partition key column names of a route record (a JSON array of names) */
static void
ParsePkColumns(SinkRoute *route, const char *json, int len)
{
	const char *p = json;
	const char *end = json + len;

	route->npk = 0;
	while (p < end && route->npk < COSMOS_MAX_PK_PATHS)
	{
		const char *start;

		p = memchr(p, '"', end - p);
		if (p == NULL)
			break;
		start = ++p;
		while (p < end && *p != '"')
			p += (*p == '\\') ? 2 : 1;
		strlcpy(route->pk_columns[route->npk++], start,
				Min((Size) (p - start) + 1, NAMEDATALEN));
		p++;
	}
}

/* A route record: create or refresh the worker's view of a route */
void
BatchRoute(const ChangeRecord *rec)
{
	bool		found;
	SinkRoute  *route = hash_search(Routes, &rec->route_id, HASH_ENTER, &found);

	if (found)
		return;					/* route ids are never reused; same route, same target */
	memset(((char *) route) + sizeof(int32), 0, sizeof(SinkRoute) - sizeof(int32));
	route->relid = rec->relid;
	route->table_name = CopyText(rec->table_name, rec->table_name_len);
	route->cosmos_database = CopyText(rec->cosmos_database, rec->cosmos_database_len);
	route->container = CopyText(rec->container, rec->container_len);
	ParsePkColumns(route, rec->pk_columns, rec->pk_columns_len);
	dlist_init(&route->ready);
	/*
	 * Changes and slots of a route: exact sizes, a block freed once all its
	 * chunks are. One context per route, so that a stuck route pins only
	 * its own blocks; small blocks, so that a slow change pins little.
	 */
	route->memory = CompatGenerationContextCreate(ChangeContext, "cosmos_sink route changes",
												  8 * 1024, 256 * 1024);
	route->container_status = CONTAINER_UNKNOWN;
	route->window = CosmosSinkMaxInFlight;
	route->ru_per_op = RU_PER_OP_GUESS;
	CosmosRouteUrls(route);
}

/*
 * The route of a change record (the last one is remembered: changes come in
 * runs of one table; routes are never removed from the table). A change
 * before its route record is a bug.
 */
static SinkRoute *
RouteOf(const ChangeRecord *rec)
{
	static SinkRoute *last = NULL;

	if (last == NULL || last->route_id != rec->route_id)
		last = BatchFindRoute(rec->route_id);
	if (last == NULL)
		elog(ERROR, "cosmos_sink: change for unknown route %d", rec->route_id);
	return last;
}

/* Memory a change holds */
static Size
ChangeSize(const Change *change)
{
	return offsetof(Change, data) + change->id_len + change->pk_len + change->doc_len + 3;
}

/* Memory a slot holds */
static inline Size
SlotSize(int id_len, int pk_len)
{
	return offsetof(DocSlot, key_data) + id_len + pk_len;
}

/* A change or slot of a route, in the route's memory (counted for RouteFree) */
static void *
RouteAlloc(SinkRoute *route, Size size)
{
	void	   *chunk = MemoryContextAlloc(route->memory, size);

	route->live_chunks++;
	return chunk;
}

/*
 * Free a change or slot of a route; once the route holds none, reset its
 * memory. From PostgreSQL 16 on a generation context keeps its emptied
 * current block and a spare one (up to 2 x 256 kB a route), which
 * BatchPendingBytes would count as pending for good: with a few routes and
 * a small buffer_size, decoding would wait forever for memory nothing holds.
 */
static void
RouteFree(SinkRoute *route, void *chunk)
{
	pfree(chunk);
	if (--route->live_chunks == 0)
		MemoryContextReset(route->memory);
}

/* Copy a decoded change into the batcher */
static Change *
NewChange(SinkRoute *route, const ChangeRecord *rec, XLogRecPtr lsn, TxnAck *txn)
{
	Change	   *change = RouteAlloc(route, offsetof(Change, data) +
									rec->id_len + rec->pk_len + rec->body_len + 3);
	char	   *p = change->data;

	change->slot = NULL;
	change->txn = txn;
	change->kind = rec->kind;
	change->lsn = lsn;
	change->attempts = 0;
	change->id_len = rec->id_len;
	change->pk_len = rec->pk_len;
	change->doc_len = rec->kind == RECORD_UPSERT ? rec->body_len : 0;
	change->id = p;
	memcpy(p, rec->id, rec->id_len);
	p[rec->id_len] = '\0';
	p += rec->id_len + 1;
	change->pk = p;
	memcpy(p, rec->pk, rec->pk_len);
	p[rec->pk_len] = '\0';
	p += rec->pk_len + 1;
	change->doc = p;
	memcpy(p, rec->body, change->doc_len);
	p[change->doc_len] = '\0';
	change->pk_hash = hash_bytes((const unsigned char *) change->pk, change->pk_len);
	PendingBytes += ChangeSize(change);
	PendingChanges++;
	return change;
}

/* A change is done (acknowledged, superseded or handed to dead_letters) */
static void
ChangeDone(SinkRoute *route, Change *change, bool count_done)
{
	if (count_done)
		CheckpointChangeDone(change->txn);
	PendingBytes -= ChangeSize(change);
	PendingChanges--;
	RouteFree(route, change);
}

/* Park a change in dead_letters; its transaction counts it done once written */
static void
ChangeDeadLetter(SinkRoute *route, Change *change, int status, int substatus,
				 const char *error)
{
	DeadLetterAdd(route->relid, change->lsn, change->kind, change->id, change->id_len,
				  change->pk, change->pk_len, change->doc, change->doc_len,
				  status, substatus, error, change->txn);
	StatsRecordDeadLetters(route->route_id, route->relid, 1);
	ChangeDone(route, change, false);
}

/* Put a slot with a waiting change on its route's ready list (retries first) */
static void
SlotEnqueue(DocSlot *slot, bool front)
{
	if (slot->queued || slot->waiting == NULL || slot->in_flight != NULL)
		return;
	if (front)
		dlist_push_head(&slot->route->ready, &slot->ready_node);
	else
		dlist_push_tail(&slot->route->ready, &slot->ready_node);
	slot->queued = true;
	slot->route->nready++;
}

/* Drop a slot that has nothing left to send */
static void
SlotSettle(DocSlot *slot, bool retry)
{
	if (slot->waiting != NULL)
	{
		SlotEnqueue(slot, retry);
		return;
	}
	if (slot->in_flight != NULL)
		return;
	slots_delete(Slots, slot);
	PendingBytes -= SlotSize(slot->id_len, slot->pk_len);
	RouteFree(slot->route, slot);
}

/* Local checks Cosmos DB would fail anyway: park such changes at once */
static bool
ChangeIsPoison(SinkRoute *route, Change *change)
{
	const char *reason = CosmosInvalidIdReason(change->id, change->id_len);

	if (reason != NULL)
	{
		ChangeDeadLetter(route, change, 400, 0, reason);
		return true;
	}
	if (change->doc_len > COSMOS_MAX_DOC_BYTES - 1024)
	{
		ChangeDeadLetter(route, change, 413, 0,
						 psprintf("document of %d bytes is over the 2 MB item limit of Cosmos DB",
								  change->doc_len));
		return true;
	}
	return false;
}

/* Hash of a document's key: route, partition key (hashed already) and id */
static uint32
DocumentKeyHash(int32 route_id, uint32 pk_hash, const char *id, int id_len)
{
	uint32		hash = hash_bytes((const unsigned char *) id, id_len);

	hash = hash_combine(hash, pk_hash);
	return hash_combine(hash, murmurhash32((uint32) route_id));
}

/* The slot of a change's document, created if new */
static DocSlot *
SlotFor(SinkRoute *route, Change *change)
{
	DocSlot		probe;
	DocSlot    *slot;
	SlotEntry  *entry;
	bool		found;

	probe.hash = DocumentKeyHash(route->route_id, change->pk_hash, change->id, change->id_len);
	probe.route = route;
	probe.id = change->id;
	probe.id_len = change->id_len;
	probe.pk = change->pk;
	probe.pk_len = change->pk_len;
	entry = slots_insert(Slots, &probe, &found);
	if (found)
		return entry->slot;

	/* (an ERROR here ends the worker, so the probe never outlives this call) */
	slot = RouteAlloc(route, SlotSize(change->id_len, change->pk_len));
	slot->hash = probe.hash;
	slot->route = route;
	slot->in_flight = NULL;
	slot->waiting = NULL;
	slot->queued = false;
	slot->id_len = change->id_len;
	slot->pk_len = change->pk_len;
	memcpy(slot->key_data, change->id, change->id_len);
	memcpy(slot->key_data + change->id_len, change->pk, change->pk_len);
	slot->id = slot->key_data;
	slot->pk = slot->key_data + change->id_len;
	entry->slot = slot;			/* the table held the probe until now */
	PendingBytes += SlotSize(change->id_len, change->pk_len);
	return slot;
}

/* An upsert or delete record: the newest state of its document */
void
BatchAddChange(const ChangeRecord *rec, XLogRecPtr lsn)
{
	SinkRoute  *route = RouteOf(rec);
	TxnAck	   *txn = CheckpointOpenTxn();
	Change	   *change;
	DocSlot    *slot;

	txn->pending++;
	change = NewChange(route, rec, lsn, txn);
	if (ChangeIsPoison(route, change))
		return;

	slot = SlotFor(route, change);
	change->slot = slot;
	if (slot->waiting != NULL)
		ChangeDone(route, slot->waiting, true);	/* superseded by this newer state */
	slot->waiting = change;
	SlotEnqueue(slot, false);
}

/* A change the plugin could not turn into a document: park it with the reason */
void
BatchAddProblem(const ChangeRecord *rec, XLogRecPtr lsn)
{
	SinkRoute  *route = RouteOf(rec);
	TxnAck	   *txn = CheckpointOpenTxn();
	char	   *error = pnstrdup(rec->body, rec->body_len);

	txn->pending++;
	DeadLetterAdd(route->relid, lsn, RECORD_ERROR, rec->id, rec->id_len, rec->pk,
				  rec->pk_len, NULL, 0, 0, 0, error, txn);
	StatsRecordDeadLetters(route->route_id, route->relid, 1);
	ereport(WARNING,
			(errmsg("cosmos_sink: change of %s parked in dead_letters: %s",
					route->table_name, error)));
	pfree(error);
}

/* TRUNCATE of a routed table: documents are kept; say so and count it */
void
BatchTruncate(const ChangeRecord *rec)
{
	SinkRoute  *route = RouteOf(rec);

	StatsRecordTruncate(route->route_id, route->relid);
	ereport(WARNING,
			(errmsg("cosmos_sink: TRUNCATE of %s is not forwarded; the documents in %s/%s are kept",
					route->table_name, route->cosmos_database, route->container),
			 errhint("Delete them in Cosmos DB, or remove and re-add the route to start over.")));
}

/* A commit record closes the open transaction */
void
BatchCommit(const ChangeRecord *rec)
{
	CheckpointCommitTxn(rec->end_lsn, rec->commit_time);
}

/*
 * Memory held by changes not yet done: their bytes, or half the blocks that
 * really hold them when a few slow changes keep many blocks alive, so that
 * real memory stays within twice the budget whatever the pattern of acks.
 */
Size
BatchPendingBytes(void)
{
	return Max(PendingBytes, MemoryContextMemAllocated(ChangeContext, true) / 2);
}

/* Number of changes not yet done */
int64
BatchPendingChanges(void)
{
	return PendingChanges;
}

/* Jittered exponential backoff after consecutive failures */
static long
BackoffMs(int failures)
{
	double		ms = BACKOFF_BASE_MS * pow(2.0, Min(failures, 10));

	ms = Min(ms, BACKOFF_MAX_MS);
	return (long) (ms / 2 + pg_prng_double(&pg_global_prng_state) * ms / 2);
}

/* Hold a route's requests for ms */
static void
RouteBackoff(SinkRoute *route, long ms, bool throttled)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	if (until > route->resume_at)
		route->resume_at = until;
	route->throttled = throttled;
}

static int	RouteOpsLimit(SinkRoute *route);

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
static bool
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

/* Submit a request for a route */
static void
SubmitRequest(SinkRoute *route, SinkRequestKind kind, HttpRequest *http, Change **ops, int nops)
{
	SinkRequest *sr = MemoryContextAllocZero(BatchContext, sizeof(SinkRequest));

	sr->kind = kind;
	sr->route = route;
	sr->http = http;
	sr->ops = ops;
	sr->nops = nops;
	/* set the expected charge aside now; the real one replaces it when known */
	sr->ru_reserved = nops * route->ru_per_op;
	if (CosmosSinkMaxRuPerSecond > 0)
		RuTokens -= sr->ru_reserved;
	http->owner = sr;
	HttpSubmit(http);
	route->requests_in_flight++;
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
static int
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

/* Operations to take now: the free request slots, and what the RU budget can pay for */
static int
DispatchLimit(SinkRoute *route, int free_requests)
{
	int			max = free_requests * RouteOpsLimit(route);

	if (CosmosSinkMaxRuPerSecond > 0)
		max = Min(max, Max(1, (int) (RuTokens / Max(route->ru_per_op, 0.1)) + 1));
	return max;
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

	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
	{
		int			free_requests = CosmosSinkMaxInFlight - HttpInFlight();

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
static void
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
static void
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

/*
 * The route of a failing container was removed: its changes, committed while
 * it was routed, can no longer be sent; park them in dead_letters with the
 * reason, so that nothing is lost and the rest flows again.
 */
void
BatchParkRoute(int32 route_id)
{
	SinkRoute  *route = BatchFindRoute(route_id);
	char	   *why;

	if (route == NULL)
		return;
	why = psprintf("route removed while its container failed: %s",
				   route->container_error ? route->container_error : "unknown error");
	while (!dlist_is_empty(&route->ready))
	{
		DocSlot    *slot = dlist_container(DocSlot, ready_node, dlist_pop_head_node(&route->ready));
		Change	   *change = slot->waiting;

		slot->queued = false;
		route->nready--;
		slot->waiting = NULL;
		ChangeDeadLetter(route, change, 0, 0, why);
		SlotSettle(slot, false);
	}
	ereport(LOG, (errmsg("cosmos_sink: %s; its pending changes are in dead_letters", why)));
	pfree(why);
}

/* Ids of routes whose container is failing (the worker checks they still exist) */
List *
BatchFailingRoutes(void)
{
	HASH_SEQ_STATUS status;
	SinkRoute  *route;
	List	   *ids = NIL;

	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
		if (route->container_status == CONTAINER_ERROR && route->nready > 0)
			ids = lappend_int(ids, route->route_id);
	return ids;
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

	sr->route->requests_in_flight--;
	if (sr->kind == SINK_REQUEST_BATCH || sr->kind == SINK_REQUEST_BULK)
		CompleteWrite(sr);
	else
		CompleteMetadata(sr);
	HttpRequestFree(http);
	if (sr->ops)
		pfree(sr->ops);
	pfree(sr);
}

/* Whether some route with work to do cannot reach its container */
bool
BatchRouteErrors(void)
{
	HASH_SEQ_STATUS status;
	SinkRoute  *route;
	bool		errors = false;

	hash_seq_init(&status, Routes);
	while ((route = hash_seq_search(&status)) != NULL)
		errors |= route->container_status == CONTAINER_ERROR && route->nready > 0;
	return errors;
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
