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
 * Set up settings, the shared state and the worker. The library must be
 * preloaded (its settings include restart-only ones): loaded any other way,
 * by CREATE EXTENSION or as an output plugin, it refuses with an ERROR that
 * says so, as pg_cron does, rather than the FATAL of defining such settings late.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cosmos_sink must be loaded via shared_preload_libraries"),
				 errhint("Add cosmos_sink to shared_preload_libraries in postgresql.conf and restart the server.")));
	GucInit();
	StatusShmemInit();
	WorkerRegister();
}
