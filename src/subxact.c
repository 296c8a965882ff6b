/*
 * subxact.c
 *		Run a step in a subtransaction and keep going when it fails: the step's
 *		work is rolled back and its error handed to the caller, which decides
 *		(park a row, retry a backfill later, store a dead letter without its
 *		document). How plpgsql runs a block with an EXCEPTION clause.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "subxact.h"

/* Whether a failed step may succeed if tried again (locks, timeouts, resources) */
bool
ErrorIsTransient(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_QUERY_CANCELED ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES;
}

/*
 * Run step(arg) in a subtransaction. NULL when it succeeded; else its error
 * (copied into the caller's memory context), everything it did rolled back.
 */
ErrorData *
RunInSubtransaction(SubtransactionStep step, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}
