/*
 * checkpoint.h
 *		Acknowledgement tracking: which decoded transactions Cosmos DB has fully
 *		acknowledged, and so how far the slot's confirmed LSN may advance.
 */
#ifndef COSMOS_SINK_CHECKPOINT_H
#define COSMOS_SINK_CHECKPOINT_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

/* One transaction with records, in commit order */
typedef struct TxnAck
{
	struct TxnAck *next;
	XLogRecPtr	end_lsn;		/* valid once the commit record was seen */
	TimestampTz commit_time;
	int64		pending;		/* changes not yet acknowledged, superseded or parked */
} TxnAck;

extern void CheckpointInit(void);
extern TxnAck *CheckpointOpenTxn(void);
extern void CheckpointCommitTxn(XLogRecPtr end_lsn, TimestampTz commit_time);
extern void CheckpointChangeDone(TxnAck *txn);
extern XLogRecPtr CheckpointAdvance(void);
extern bool CheckpointEmpty(void);
extern TimestampTz CheckpointOldestCommitTime(void);

#endif							/* COSMOS_SINK_CHECKPOINT_H */
