/*
 * cosmos_sink.c
 *		Library entry point: _PG_init only asks each module to set itself up.
 *		The same library is both the output plugin and the background worker.
 */
#include "postgres.h"

#include "fmgr.h"

#include "cosmos_sink.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Set up settings, then the parts that need shared_preload_libraries */
void
_PG_init(void)
{
	GucInit();
}
