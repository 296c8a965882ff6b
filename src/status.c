/*
 * status.c
 *		Shared-memory state of the worker and the SQL functions that read or
 *		steer it: status(), pause(), resume(). Lag in bytes and seconds is
 *		derived in the status view from this state and the slot.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "cosmos_sink.h"
#include "stats.h"
#include "status.h"

PG_FUNCTION_INFO_V1(route_id_floor);
PG_FUNCTION_INFO_V1(worker_status);
PG_FUNCTION_INFO_V1(pause_forwarding);
PG_FUNCTION_INFO_V1(resume_forwarding);

CosmosSinkShared *CosmosSinkState = NULL;

static shmem_request_hook_type PrevShmemRequestHook = NULL;
static shmem_startup_hook_type PrevShmemStartupHook = NULL;

/* Ask for our shared memory (PG15+: only allowed from this hook) */
static void
StatusShmemRequest(void)
{
	if (PrevShmemRequestHook)
		PrevShmemRequestHook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CosmosSinkShared)));
	StatsShmemRequest();
}

/* Create or attach the shared state */
static void
StatusShmemStartup(void)
{
	bool		found;

	if (PrevShmemStartupHook)
		PrevShmemStartupHook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	CosmosSinkState = ShmemInitStruct("cosmos_sink", sizeof(CosmosSinkShared), &found);
	if (!found)
	{
		memset(CosmosSinkState, 0, sizeof(CosmosSinkShared));
		SpinLockInit(&CosmosSinkState->mutex);
		CosmosSinkState->state = WORKER_STOPPED;
	}
	StatsShmemStartup();
	LWLockRelease(AddinShmemInitLock);
}

/* Install the shared-memory hooks (only under shared_preload_libraries) */
void
StatusShmemInit(void)
{
	PrevShmemRequestHook = shmem_request_hook;
	shmem_request_hook = StatusShmemRequest;
	PrevShmemStartupHook = shmem_startup_hook;
	shmem_startup_hook = StatusShmemStartup;
}

/* Name of a state, as shown in cosmos_sink.status */
const char *
WorkerStateName(WorkerState state)
{
	static const char *const names[] = {
		"starting", "streaming", "idle", "throttled", "paused", "error", "stopped", "standby"
	};

	return names[state];
}

/* Set the worker's state */
void
StatusSetState(WorkerState state)
{
	SpinLockAcquire(&CosmosSinkState->mutex);
	CosmosSinkState->state = state;
	SpinLockRelease(&CosmosSinkState->mutex);
}

/* Cut a message its buffer cut short back to a whole character (a multibyte one may be split) */
static void
ClipToCharacter(char *buf)
{
	int			len = (int) strlen(buf);

	buf[pg_mbcliplen(buf, len, len)] = '\0';
}

/* Record the last error (shown in the status view; also logged by the caller) */
void
StatusSetError(const char *fmt,...)
{
	char		buf[STATUS_ERROR_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	ClipToCharacter(buf);
	SpinLockAcquire(&CosmosSinkState->mutex);
	strlcpy(CosmosSinkState->last_error, buf, STATUS_ERROR_LEN);
	CosmosSinkState->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&CosmosSinkState->mutex);
}

/*
 * Forget the last error once things work again (last_error_at keeps its
 * time); a standing warning shows in its place
 */
void
StatusClearError(void)
{
	SpinLockAcquire(&CosmosSinkState->mutex);
	strlcpy(CosmosSinkState->last_error, CosmosSinkState->warning, STATUS_ERROR_LEN);
	SpinLockRelease(&CosmosSinkState->mutex);
}

/*
 * A condition that does not stop forwarding but needs the DBA (a setting
 * that cannot take effect): shown in last_error, prefixed "warning: ",
 * whenever no error is (an error is never overwritten by it), until cleared
 */
void
StatusSetWarning(const char *fmt,...)
{
	char		buf[STATUS_ERROR_LEN];
	va_list		args;

	strlcpy(buf, "warning: ", sizeof(buf));
	va_start(args, fmt);
	vsnprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), fmt, args);
	va_end(args);
	ClipToCharacter(buf);
	SpinLockAcquire(&CosmosSinkState->mutex);
	if (CosmosSinkState->last_error[0] == '\0' ||
		strcmp(CosmosSinkState->last_error, CosmosSinkState->warning) == 0)
	{
		if (strcmp(CosmosSinkState->last_error, buf) != 0)
			CosmosSinkState->last_error_at = GetCurrentTimestamp();
		strlcpy(CosmosSinkState->last_error, buf, STATUS_ERROR_LEN);
	}
	strlcpy(CosmosSinkState->warning, buf, STATUS_ERROR_LEN);
	SpinLockRelease(&CosmosSinkState->mutex);
}

/* The standing warning no longer holds */
void
StatusClearWarning(void)
{
	SpinLockAcquire(&CosmosSinkState->mutex);
	if (strcmp(CosmosSinkState->last_error, CosmosSinkState->warning) == 0)
		CosmosSinkState->last_error[0] = '\0';
	CosmosSinkState->warning[0] = '\0';
	SpinLockRelease(&CosmosSinkState->mutex);
}

/*
 * Remember the highest route id added or decoded since the server started:
 * route ids of a new CREATE EXTENSION start above it (route_id_floor()), so
 * a worker that still knows the old routes by id never mistakes a new one.
 */
void
StatusNoteRouteId(int32 route_id)
{
	if (CosmosSinkState == NULL)
		return;
	SpinLockAcquire(&CosmosSinkState->mutex);
	CosmosSinkState->highest_route_id = Max(CosmosSinkState->highest_route_id, route_id);
	SpinLockRelease(&CosmosSinkState->mutex);
}

/* SQL: the first route id a new routes table may use (see StatusNoteRouteId) */
Datum
route_id_floor(PG_FUNCTION_ARGS)
{
	int32		highest = 0;

	if (CosmosSinkState != NULL)
	{
		SpinLockAcquire(&CosmosSinkState->mutex);
		highest = CosmosSinkState->highest_route_id;
		SpinLockRelease(&CosmosSinkState->mutex);
	}
	PG_RETURN_INT32(highest + 1);
}

/* Whether pause() is in effect */
bool
StatusPaused(void)
{
	bool		paused;

	SpinLockAcquire(&CosmosSinkState->mutex);
	paused = CosmosSinkState->paused;
	SpinLockRelease(&CosmosSinkState->mutex);
	return paused;
}

/* Complain when the library was not preloaded */
static void
RequireSharedState(void)
{
	if (CosmosSinkState == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cosmos_sink is not loaded"),
				 errhint("Add cosmos_sink to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* Wake the worker so it notices a change at once */
static void
WakeWorker(void)
{
	Latch	   *latch;

	SpinLockAcquire(&CosmosSinkState->mutex);
	latch = CosmosSinkState->worker_latch;
	SpinLockRelease(&CosmosSinkState->mutex);
	if (latch)
		SetLatch(latch);
}

/* Set the pause switch and wake the worker */
static void
SetPaused(bool paused)
{
	RequireSharedState();
	SpinLockAcquire(&CosmosSinkState->mutex);
	CosmosSinkState->paused = paused;
	SpinLockRelease(&CosmosSinkState->mutex);
	WakeWorker();
}

/* pause(): hold forwarding; WAL is kept by the slot meanwhile */
Datum
pause_forwarding(PG_FUNCTION_ARGS)
{
	SetPaused(true);
	PG_RETURN_VOID();
}

/* resume(): continue forwarding */
Datum
resume_forwarding(PG_FUNCTION_ARGS)
{
	SetPaused(false);
	PG_RETURN_VOID();
}

/* worker_status(): one row of the worker's shared state, for the status view */
Datum
worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[10];
	bool		nulls[10] = {0};
	CosmosSinkShared snap;
	bool		alive;

	RequireSharedState();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SpinLockAcquire(&CosmosSinkState->mutex);
	memcpy(&snap, CosmosSinkState, sizeof(CosmosSinkShared));
	SpinLockRelease(&CosmosSinkState->mutex);

	alive = snap.worker_pid != 0 && kill(snap.worker_pid, 0) == 0;
	if (!alive)
		snap.state = WORKER_STOPPED;
	else if (snap.paused && snap.state != WORKER_ERROR && snap.state != WORKER_STANDBY)
		snap.state = WORKER_PAUSED;

	values[0] = CStringGetTextDatum(WorkerStateName(snap.state));
	values[1] = Int32GetDatum(snap.worker_pid);
	nulls[1] = !alive;
	values[2] = LSNGetDatum(snap.decoded_lsn);
	nulls[2] = XLogRecPtrIsInvalid(snap.decoded_lsn);
	values[3] = TimestampTzGetDatum(snap.oldest_unacked_commit);
	nulls[3] = snap.oldest_unacked_commit == 0;
	values[4] = TimestampTzGetDatum(snap.last_ack_at);
	nulls[4] = snap.last_ack_at == 0;
	values[5] = Int32GetDatum(alive ? snap.in_flight : 0);
	values[6] = CStringGetTextDatum(snap.last_error);
	nulls[6] = snap.last_error[0] == '\0';
	values[7] = TimestampTzGetDatum(snap.last_error_at);
	nulls[7] = snap.last_error_at == 0;
	values[8] = BoolGetDatum(snap.paused);
	values[9] = CStringGetTextDatum(CosmosSinkSlotName);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
