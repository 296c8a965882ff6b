/*
 * deadletter.h
 *		Records Cosmos DB refused for good (or that cannot become documents)
 *		are parked in cosmos_sink.dead_letters; the rest keeps flowing.
 */
#ifndef COSMOS_SINK_DEADLETTER_H
#define COSMOS_SINK_DEADLETTER_H

#include "postgres.h"

#include "access/xlogdefs.h"

#include "checkpoint.h"

extern void DeadLetterInit(void);
extern void DeadLetterAdd(Oid relid, XLogRecPtr lsn, char kind,
						  const char *id, int id_len, const char *pk, int pk_len,
						  const char *doc, int doc_len, int status, int substatus,
						  const char *error, TxnAck *txn);
extern int	DeadLetterQueued(void);
extern int	DeadLetterFlush(void);
extern bool DeadLettersFull(char **problem);

#endif							/* COSMOS_SINK_DEADLETTER_H */
