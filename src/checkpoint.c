/*
 * checkpoint.c
 *		Acknowledgement tracking. Transactions with records form a FIFO in
 *		commit order, each with a count of changes not yet done (acknowledged
 *		by Cosmos DB, superseded by a newer change of the same document, or
 *		parked in dead_letters). The confirmed LSN may move to the end of the
 *		newest transaction of the fully done prefix, never past a gap.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "checkpoint.h"

static MemoryContext CheckpointContext = NULL;
static TxnAck *Head = NULL;		/* oldest */
static TxnAck *Tail = NULL;		/* newest; open while end_lsn is invalid */

/* Set up the tracker's memory; called once per worker process */
void
CheckpointInit(void)
{
	CheckpointContext = AllocSetContextCreate(TopMemoryContext, "cosmos_sink checkpoint",
											  ALLOCSET_SMALL_SIZES);
	Head = Tail = NULL;
}

/* The transaction receiving records now (a new one after each commit record) */
TxnAck *
CheckpointOpenTxn(void)
{
	TxnAck	   *txn;

	if (Tail != NULL && XLogRecPtrIsInvalid(Tail->end_lsn))
		return Tail;
	txn = MemoryContextAllocZero(CheckpointContext, sizeof(TxnAck));
	if (Tail)
		Tail->next = txn;
	else
		Head = txn;
	Tail = txn;
	return txn;
}

/* The open transaction's commit record arrived: it may be confirmed once done */
void
CheckpointCommitTxn(XLogRecPtr end_lsn, TimestampTz commit_time)
{
	TxnAck	   *txn = CheckpointOpenTxn();

	txn->end_lsn = end_lsn;
	txn->commit_time = commit_time;
}

/* One change of txn is done (acked, superseded or parked) */
void
CheckpointChangeDone(TxnAck *txn)
{
	Assert(txn->pending > 0);
	txn->pending--;
}

/* Pop the done prefix; return the LSN that may now be confirmed (or Invalid) */
XLogRecPtr
CheckpointAdvance(void)
{
	XLogRecPtr	confirm = InvalidXLogRecPtr;

	while (Head != NULL && Head->pending == 0 && !XLogRecPtrIsInvalid(Head->end_lsn))
	{
		TxnAck	   *done = Head;

		confirm = done->end_lsn;
		Head = done->next;
		if (Head == NULL)
			Tail = NULL;
		pfree(done);
	}
	return confirm;
}

/* Whether no transaction is outstanding */
bool
CheckpointEmpty(void)
{
	return Head == NULL;
}

/* Commit time of the oldest committed transaction not yet done (0 if none) */
TimestampTz
CheckpointOldestCommitTime(void)
{
	TxnAck	   *txn;

	for (txn = Head; txn != NULL; txn = txn->next)
		if (!XLogRecPtrIsInvalid(txn->end_lsn))
			return txn->commit_time;
	return 0;
}
