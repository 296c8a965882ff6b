/*
 * decoder.h
 *		In-process consumption of the replication slot: one long-lived logical
 *		decoding context whose plugin output goes straight to the batcher.
 */
#ifndef COSMOS_SINK_DECODER_H
#define COSMOS_SINK_DECODER_H

#include "postgres.h"

#include "access/xlogdefs.h"

/*
 * Called from inside decoding: with full = true when the batcher is over its
 * memory budget (send and wait), otherwise after every DECODER_SERVICE_EVERY
 * records decoded within budget, to settle finished requests and send full
 * ones without waiting.
 */
typedef void (*DecoderPumpHook) (bool full);

#define DECODER_SERVICE_EVERY	32

extern bool DecoderStart(DecoderPumpHook pump, char **problem);
extern bool DecoderActive(void);
extern bool DecoderRound(Size budget, long max_ms);
extern XLogRecPtr DecoderReadLsn(void);
extern bool DecoderCaughtUp(void);
extern void DecoderConfirm(XLogRecPtr lsn);
extern void DecoderSaveSlot(void);
extern XLogRecPtr DecoderConfirmedLsn(void);
extern void DecoderBeforeSql(void);

#endif							/* COSMOS_SINK_DECODER_H */
