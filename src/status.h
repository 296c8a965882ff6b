/*
 * status.h
 *		State the worker shares with every backend (shared memory): what it is
 *		doing, how far it got, its last error, and the pause switch.
 */
#ifndef COSMOS_SINK_STATUS_H
#define COSMOS_SINK_STATUS_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

typedef enum WorkerState
{
	WORKER_STARTING,
	WORKER_STREAMING,
	WORKER_IDLE,
	WORKER_THROTTLED,
	WORKER_PAUSED,
	WORKER_ERROR,
	WORKER_STOPPED,
	WORKER_STANDBY				/* the server is a standby: nothing to forward */
} WorkerState;

#define STATUS_ERROR_LEN 512

typedef struct CosmosSinkShared
{
	slock_t		mutex;			/* protects everything but the atomics */
	pid_t		worker_pid;
	Latch	   *worker_latch;
	WorkerState state;
	bool		paused;
	XLogRecPtr	confirmed_lsn;	/* what the worker confirmed to the slot */
	XLogRecPtr	decoded_lsn;	/* how far it has read WAL */
	TimestampTz oldest_unacked_commit;	/* 0 when everything is acknowledged */
	TimestampTz last_ack_at;
	int			in_flight;
	char		last_error[STATUS_ERROR_LEN];
	TimestampTz last_error_at;
	char		warning[STATUS_ERROR_LEN];	/* standing warning: last_error when no error */
	int32		highest_route_id;	/* added or decoded since the server started */
} CosmosSinkShared;

extern CosmosSinkShared *CosmosSinkState;

extern void StatusSetState(WorkerState state);
extern void StatusSetError(const char *fmt,...) pg_attribute_printf(1, 2);
extern void StatusClearError(void);
extern void StatusSetWarning(const char *fmt,...) pg_attribute_printf(1, 2);
extern void StatusClearWarning(void);
extern bool StatusPaused(void);
extern void StatusNoteRouteId(int32 route_id);
extern const char *WorkerStateName(WorkerState state);

#endif							/* COSMOS_SINK_STATUS_H */
