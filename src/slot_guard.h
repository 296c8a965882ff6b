/*
 * slot_guard.h
 *		Knowing the replication slot is the one the routes' changes were kept
 *		in: a slot that disappeared or was made again is found, never silently
 *		replaced, and nothing is forwarded until recover().
 */
#ifndef COSMOS_SINK_SLOT_GUARD_H
#define COSMOS_SINK_SLOT_GUARD_H

#include "postgres.h"

#include "access/xlogdefs.h"

/* The worker's slot as shared memory shows it */
typedef struct SlotFacts
{
	bool		exists;
	bool		foreign;		/* another database's or another plugin's */
	bool		invalidated;	/* WAL it needed was removed */
	bool		synced;			/* copied from a primary (17 and later) */
	bool		failover;		/* synchronised to standbys (17 and later) */
	int			active_pid;		/* the process holding it, or 0 */
	XLogRecPtr	restart_lsn;
} SlotFacts;

/* What the worker knows of its slot before it starts decoding */
typedef enum SlotVerdict
{
	SLOT_OURS,					/* decode it */
	SLOT_NOT_YET,				/* no route has made a slot yet: nothing to do */
	SLOT_LOST					/* gone or made again: changes may be missing */
} SlotVerdict;

extern void SlotGuardFacts(SlotFacts *facts);
extern SlotVerdict SlotGuardVerify(const SlotFacts *facts, char **problem);
extern XLogRecPtr SlotGuardBound(XLogRecPtr target, bool may_record, bool idle);
extern void SlotGuardEnsureForRoute(void);
extern char *SlotGuardFailoverProblem(void);
extern bool SlotGuardAcquiredIsOurs(void);

#endif							/* COSMOS_SINK_SLOT_GUARD_H */
