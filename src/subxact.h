/*
 * subxact.h
 *		Steps that may fail without stopping the worker: run in a subtransaction.
 */
#ifndef COSMOS_SINK_SUBXACT_H
#define COSMOS_SINK_SUBXACT_H

#include "postgres.h"

typedef void (*SubtransactionStep) (void *arg);

extern ErrorData *RunInSubtransaction(SubtransactionStep step, void *arg);
extern bool ErrorIsTransient(int sqlerrcode);

#endif							/* COSMOS_SINK_SUBXACT_H */
