/*
 * batch.c
 *		Batching and coalescing. Each document has one slot: at most one change
 *		in flight and the newest change waiting behind it, so the last committed
 *		state wins and an older state never lands after a newer one. Ready
 *		slots of a route are grouped into transactional batches (many changes
 *		of one logical partition) or bulk requests per physical partition range.
 *
 * This file holds the routes, the document slots and coalescing, and the
 * entry points for decoded records; batch_dispatch.c groups and sends
 * requests, batch_budget.c paces them (RU budget, AIMD, backoff) and
 * batch_complete.c settles them.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "batch.h"
#include "batch_internal.h"
#include "compat.h"
#include "cosmos_client.h"
#include "cosmos_sink.h"
#include "deadletter.h"
#include "stats.h"

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
	return a->container_id == b->container_id && a->id_len == b->id_len && a->pk_len == b->pk_len &&
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

MemoryContext BatchContext = NULL;
static MemoryContext ChangeContext = NULL;	/* parent of the routes' change memory */
HTAB *Routes = NULL;		/* route_id -> SinkRoute */
static slots_hash *Slots = NULL;	/* (container, pk, id) -> DocSlot */
static dlist_head FencedSlots = DLIST_STATIC_INIT(FencedSlots);	/* held back: SlotFence */
static Size PendingBytes = 0;
static int64 PendingChanges = 0;

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

/*
 * The id that stands for a new route's container in document keys: that of
 * an earlier route to the same database and container, or its own. Routes
 * are never removed from the table, so the id stays valid.
 */
static int32
ContainerIdOf(SinkRoute *route)
{
	HASH_SEQ_STATUS status;
	SinkRoute  *other;

	hash_seq_init(&status, Routes);
	while ((other = hash_seq_search(&status)) != NULL)
	{
		if (other != route &&
			strcmp(other->cosmos_database, route->cosmos_database) == 0 &&
			strcmp(other->container, route->container) == 0)
		{
			hash_seq_term(&status);
			return other->container_id;
		}
	}
	return route->route_id;
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
	route->container_id = ContainerIdOf(route);
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
	route->offer.level = COSMOS_OFFER_NONE;
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
	change->route = route;
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
void
ChangeDone(SinkRoute *route, Change *change, bool count_done)
{
	/* freed in its own route's memory (its slot may be another route's) */
	Assert(change->route == route);
	if (count_done)
		CheckpointChangeDone(change->txn);
	PendingBytes -= ChangeSize(change);
	PendingChanges--;
	RouteFree(route, change);
}

/* Park a change in dead_letters; its transaction counts it done once written */
void
ChangeDeadLetter(SinkRoute *route, Change *change, int status, int substatus,
				 const char *error)
{
	DeadLetterAdd(route->relid, change->lsn, change->kind, change->id, change->id_len,
				  change->pk, change->pk_len, change->doc, change->doc_len,
				  status, substatus, error, change->txn);
	StatsRecordDeadLetters(route->route_id, route->relid, 1);
	ChangeDone(route, change, false);
}

/*
 * Put a slot with a waiting change on the ready list of that change's route
 * (retries first): the route that sends it
 */
static void
SlotEnqueue(DocSlot *slot, bool front)
{
	SinkRoute  *route;

	if (slot->queued || slot->fenced || slot->waiting == NULL || slot->in_flight != NULL)
		return;
	route = slot->waiting->route;
	if (front)
		dlist_push_head(&route->ready, &slot->ready_node);
	else
		dlist_push_tail(&route->ready, &slot->ready_node);
	slot->queued = true;
	route->nready++;
}

/* Take a slot off its ready list (its waiting change is replaced by another route's) */
static void
SlotDequeue(DocSlot *slot)
{
	if (!slot->queued)
		return;
	dlist_delete(&slot->ready_node);
	slot->queued = false;
	slot->waiting->route->nready--;
}

/*
 * Hold a document back after a write whose outcome is unknown (no answer,
 * 408, 5xx): Cosmos DB may still apply it, so its next write waits until
 * cosmos_sink.unknown_outcome_delay_ms has passed; a newer state sent sooner
 * could be overwritten by the late one. The slot is kept meanwhile, even
 * when empty, so a new change of the document waits too.
 */
void
SlotFence(DocSlot *slot)
{
	if (CosmosSinkUnknownOutcomeDelayMs <= 0)
		return;
	slot->fence_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													CosmosSinkUnknownOutcomeDelayMs);
	if (!slot->fenced)
		dlist_push_tail(&FencedSlots, &slot->fence_node);
	slot->fenced = true;
}

/* Let go of the slots whose fence has passed: send what waits, drop what is empty */
void
BatchReleaseFences(void)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &FencedSlots)
	{
		DocSlot    *slot = dlist_container(DocSlot, fence_node, iter.cur);

		if (slot->fence_until > now)
			continue;
		dlist_delete(&slot->fence_node);
		slot->fenced = false;
		SlotSettle(slot, true);
	}
}

/* Milliseconds until the first fence passes, at most max_ms */
long
BatchFenceWaitMs(long max_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_iter	iter;

	dlist_foreach(iter, &FencedSlots)
	{
		DocSlot    *slot = dlist_container(DocSlot, fence_node, iter.cur);

		max_ms = Min(max_ms, Max(TimestampDifferenceMilliseconds(now, slot->fence_until), 0));
	}
	return max_ms;
}

/* Drop a slot that has nothing left to send (a fenced one waits for its fence) */
void
SlotSettle(DocSlot *slot, bool retry)
{
	if (slot->fenced)
		return;					/* BatchReleaseFences settles it */
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

/* Hash of a document's key: container, partition key (hashed already) and id */
static uint32
DocumentKeyHash(int32 container_id, uint32 pk_hash, const char *id, int id_len)
{
	uint32		hash = hash_bytes((const unsigned char *) id, id_len);

	hash = hash_combine(hash, pk_hash);
	return hash_combine(hash, murmurhash32((uint32) container_id));
}

/* The slot of a change's document, created if new */
static DocSlot *
SlotFor(SinkRoute *route, Change *change)
{
	DocSlot		probe;
	DocSlot    *slot;
	SlotEntry  *entry;
	bool		found;

	probe.hash = DocumentKeyHash(route->container_id, change->pk_hash, change->id, change->id_len);
	probe.container_id = route->container_id;
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
	slot->container_id = route->container_id;
	slot->route = route;
	slot->in_flight = NULL;
	slot->waiting = NULL;
	slot->queued = false;
	slot->fenced = false;
	slot->fence_until = 0;
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
	{
		/* superseded by this newer state, maybe of another route to the container */
		if (slot->waiting->route != route)
			SlotDequeue(slot);
		ChangeDone(slot->waiting->route, slot->waiting, true);
	}
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
