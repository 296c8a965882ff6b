/*
 * cosmos_sink.c
 *		Library entry point: _PG_init only asks each module to set itself up.
 *		The same library is both the output plugin and the background worker.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "cosmos_sink.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Set up settings; the shared state and the worker only when preloaded (the
 * library is also loaded on demand as an output plugin by SQL decoding).
 */
void
_PG_init(void)
{
	GucInit();
	if (!process_shared_preload_libraries_in_progress)
		return;
	StatusShmemInit();
	WorkerRegister();
}
