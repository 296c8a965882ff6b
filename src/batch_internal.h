/*
 * batch_internal.h
 *		What the batcher's files share: batch.c (routes, document slots and
 *		coalescing), batch_dispatch.c (grouping ready changes into requests and
 *		sending them), batch_budget.c (RU budget, adaptive concurrency and
 *		backoff), batch_offer.c (the budget that follows the provisioned
 *		throughput) and batch_complete.c (settling finished requests). Not for use
 *		outside the batcher: batch.h is its interface.
 */
#ifndef COSMOS_SINK_BATCH_INTERNAL_H
#define COSMOS_SINK_BATCH_INTERNAL_H

#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "batch.h"

/* Initial guess of a route's charge per operation, for the RU budget */
#define RU_PER_OP_GUESS		10.0

/* batch.c */
extern MemoryContext BatchContext;
extern HTAB *Routes;
extern void ChangeDone(SinkRoute *route, Change *change, bool count_done);
extern void ChangeDeadLetter(SinkRoute *route, Change *change, int status, int substatus,
							 const char *error);
extern void SlotSettle(DocSlot *slot, bool retry);
extern void SlotFence(DocSlot *slot);
extern void BatchReleaseFences(void);
extern long BatchFenceWaitMs(long max_ms);

/* batch_dispatch.c */
extern int	RouteOpsLimit(SinkRoute *route);
extern void SubmitRequest(SinkRoute *route, SinkRequestKind kind, HttpRequest *http,
						  Change **ops, int nops);

/* batch_budget.c */
extern long BackoffMs(int failures);
extern void RouteBackoff(SinkRoute *route, long ms, bool throttled);
extern bool RuBudgetAllowsBatch(SinkRoute *route);
extern double RuReserve(SinkRoute *route, int nops, struct RuBucket **bucket);
extern int	DispatchLimit(SinkRoute *route, int free_requests);
extern void AccountCharge(SinkRoute *route, SinkRequest *sr, bool per_op);
extern void AdaptWindow(SinkRoute *route, bool throttled);

/* batch_offer.c */
extern double OfferBudget(SinkRoute *route);
extern bool OfferAfterContainer(SinkRoute *route, const char *body, size_t len);
extern void OfferRead(SinkRoute *route, bool chained);
extern void OfferSetNone(SinkRoute *route, const char *why);
extern void OfferComplete(SinkRequest *sr);
extern void OfferNoteThrottled(SinkRoute *route);
extern void OfferDispatch(SinkRoute *route, TimestampTz now);

#endif							/* COSMOS_SINK_BATCH_INTERNAL_H */
