/*
 * batch.h
 *		Batching and coalescing: the worker's in-memory set of changes waiting
 *		for Cosmos DB, one slot per document (last committed state wins, one
 *		request in flight per document), grouped into per-partition requests.
 */
#ifndef COSMOS_SINK_BATCH_H
#define COSMOS_SINK_BATCH_H

#include "postgres.h"

#include "lib/ilist.h"
#include "nodes/pg_list.h"

#include "checkpoint.h"
#include "cosmos.h"
#include "http.h"
#include "record.h"

typedef enum ContainerStatus
{
	CONTAINER_UNKNOWN,			/* definition not read yet */
	CONTAINER_FETCHING,			/* GET container or pkranges in flight */
	CONTAINER_NEED_OFFER,		/* definition known, provisioned throughput not read */
	CONTAINER_NEED_RANGES,		/* definition known, ranges stale */
	CONTAINER_READY,
	CONTAINER_ERROR				/* missing, mismatched or unauthorized: retry slowly */
} ContainerStatus;

/* A route as the worker knows it (from the plugin's route records) */
typedef struct SinkRoute
{
	int32		route_id;		/* hash key */
	int32		container_id;	/* the first route to the same container: documents key by it */
	Oid			relid;
	char	   *table_name;
	char	   *cosmos_database;
	char	   *container;
	int			npk;
	char		pk_columns[COSMOS_MAX_PK_PATHS][NAMEDATALEN];
	char	   *path;			/* dbs/{db}/colls/{coll}, URL-encoded */
	char	   *resource_link;	/* dbs/{db}/colls/{coll}, for signing */

	ContainerStatus container_status;
	CosmosPartitionKeyDef pk_def;
	CosmosPkRange *ranges;
	int			nranges;
	char	   *container_error;	/* why CONTAINER_ERROR */

	dlist_head	ready;			/* DocSlots with a change ready to send */
	int			nready;
	int			requests_in_flight;
	TimestampTz resume_at;		/* backoff after 429 or failures */
	bool		throttled;		/* resume_at is a 429 wait */
	int			failures;		/* consecutive failed requests */
	int			ops_limit;		/* ops per request after a 413 (0: batch_max_ops) */
	int			window;			/* adaptive concurrency: requests allowed in flight */
	int			window_successes;	/* successes since the window last grew */
	double		ru_per_op;		/* running average charge, for the RU budget */
	TimestampTz last_sent_at;	/* last write request, to bound how long changes are held back */
	/* provisioned throughput, under max_ru_per_second = 'auto' (batch_offer.c) */
	char	   *coll_rid;		/* the container's resource id */
	char	   *db_rid;			/* its database's */
	CosmosOffer offer;			/* level NONE: no budget */
	char	   *offer_problem;	/* why there is none: serverless, forbidden, unreadable */
	uint32		offer_version;	/* counts changes of offer and offer_problem */
	bool		offer_reading;	/* an offers query is in flight (not in requests_in_flight) */
	bool		offer_chained;	/* ... read right after the container, before its ranges */
	bool		offer_forbidden;	/* the credentials may not read offers */
	int			offer_failed_status;	/* of the last failed read, logged once */
	TimestampTz offer_due_at;	/* when to read it again */
	TimestampTz offer_read_at;
	int			storm_throttles;	/* 429s since storm_since */
	TimestampTz storm_since;
	void	   *budget_shown;	/* what container_stats' budget was computed from */
	struct RuBucket *bucket;	/* the offer's token bucket, once used (batch_budget.c) */

	MemoryContext memory;		/* the route's changes and slots (a generation context) */
	int64		live_chunks;	/* changes and slots allocated in memory, not yet freed */
} SinkRoute;

/* One change of one document, as decoded */
typedef struct Change
{
	struct DocSlot *slot;
	SinkRoute  *route;			/* whose change (its memory, its requests) */
	TxnAck	   *txn;
	char		kind;			/* RECORD_UPSERT or RECORD_DELETE */
	XLogRecPtr	lsn;
	int			attempts;
	int			range;			/* physical range index, set when dispatched in bulk */
	uint32		pk_hash;		/* of the partition key JSON, to group changes by key */
	int32		id_len;
	int32		pk_len;
	int32		doc_len;
	char	   *id;
	char	   *pk;
	char	   *doc;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} Change;

/*
 * One document: the change in flight and the newest change waiting behind
 * it. Its key (container, partition key, id) is stored inline, hashed once:
 * two routes to one container share the slots of their documents, so a
 * document keeps its order whichever route writes it.
 */
typedef struct DocSlot
{
	uint32		hash;			/* of the key, kept by the slot table */
	int32		container_id;	/* of the routes to the document's container */
	SinkRoute  *route;			/* whose memory holds the slot */
	Change	   *in_flight;
	Change	   *waiting;
	dlist_node	ready_node;
	bool		queued;			/* in the ready list of waiting's route */
	TimestampTz fence_until;	/* nothing sent before: an earlier write may still land */
	dlist_node	fence_node;		/* in FencedSlots while fenced */
	bool		fenced;
	int32		id_len;
	int32		pk_len;
	const char *id;				/* into key_data (a lookup probe: into its change) */
	const char *pk;
	char		key_data[FLEXIBLE_ARRAY_MEMBER];
} DocSlot;

typedef enum SinkRequestKind
{
	SINK_REQUEST_BATCH,			/* transactional batch, one logical partition */
	SINK_REQUEST_BULK,			/* non-atomic, one physical partition range */
	SINK_REQUEST_CONTAINER,		/* GET container definition */
	SINK_REQUEST_PKRANGES,		/* GET partition key ranges */
	SINK_REQUEST_OFFER			/* POST /offers: provisioned throughput */
} SinkRequestKind;

/* A request in flight; http->owner points back here */
typedef struct SinkRequest
{
	SinkRequestKind kind;
	SinkRoute  *route;
	HttpRequest *http;
	int			nops;
	Change	  **ops;
	double		ru_reserved;	/* RU budget set aside when sent */
	struct RuBucket *ru_bucket; /* where from (NULL: no budget); refunded there */
} SinkRequest;

extern void BatchInit(void);
extern void BatchRoute(const ChangeRecord *rec);
extern void BatchAddChange(const ChangeRecord *rec, XLogRecPtr lsn);
extern void BatchAddProblem(const ChangeRecord *rec, XLogRecPtr lsn);
extern void BatchTruncate(const ChangeRecord *rec);
extern void BatchCommit(const ChangeRecord *rec);
extern Size BatchPendingBytes(void);
extern int64 BatchPendingChanges(void);
extern int	BatchDispatch(bool eager);
extern void BatchComplete(HttpRequest *http);
extern bool BatchThrottled(void);
extern bool BatchRouteErrors(void);
extern List *BatchFailingRoutes(void);
extern void BatchParkRoute(int32 route_id);
extern long BatchNextWakeMs(long max_ms);
extern SinkRoute *BatchFindRoute(int32 route_id);

#endif							/* COSMOS_SINK_BATCH_H */
