/*
 * compat.h
 *		Differences between PostgreSQL major versions (13-17), kept in one place
 *		so the rest of the code reads as if there were only one version.
 */
#ifndef COSMOS_SINK_COMPAT_H
#define COSMOS_SINK_COMPAT_H

#include "postgres.h"

#include "catalog/pg_class.h"
#include "replication/reorderbuffer.h"
#include "lib/stringinfo.h"
#include "utils/acl.h"
#include "utils/json.h"
#include "utils/memutils.h"

/* Commit timestamp of a decoded transaction */
#if PG_VERSION_NUM >= 150000
#define CompatTxnCommitTime(txn) ((txn)->xact_time.commit_time)
#else
#define CompatTxnCommitTime(txn) ((txn)->commit_time)
#endif

/* Tuples of a decoded change: ReorderBufferTupleBuf before 17, HeapTuple after */
#if PG_VERSION_NUM >= 170000
#define CompatChangeNewTuple(change) ((change)->data.tp.newtuple)
#define CompatChangeOldTuple(change) ((change)->data.tp.oldtuple)
#else
#define CompatChangeNewTuple(change) \
	((change)->data.tp.newtuple ? &(change)->data.tp.newtuple->tuple : NULL)
#define CompatChangeOldTuple(change) \
	((change)->data.tp.oldtuple ? &(change)->data.tp.oldtuple->tuple : NULL)
#endif

/* Ownership check of a relation */
#if PG_VERSION_NUM >= 160000
#define CompatRelationOwnerCheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#else
#define CompatRelationOwnerCheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#endif

/* Reserve the GUC prefix so typos in cosmos_sink.* settings are reported */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* Flush position of WAL */
#if PG_VERSION_NUM >= 150000
#define CompatGetFlushRecPtr() GetFlushRecPtr(NULL)
#else
#define CompatGetFlushRecPtr() GetFlushRecPtr()
#endif

/* Progress report from an output plugin's commit callback */
#if PG_VERSION_NUM >= 150000
#define CompatOutputPluginUpdateProgress(ctx, skipped) \
	OutputPluginUpdateProgress((ctx), (skipped))
#else
#define CompatOutputPluginUpdateProgress(ctx, skipped) OutputPluginUpdateProgress(ctx)
#endif

/* Whether a replication slot was invalidated (its WAL is gone) */
#if PG_VERSION_NUM >= 160000
#define CompatSlotInvalidated(slot) ((slot)->data.invalidated != RS_INVAL_NONE)
#else
#define CompatSlotInvalidated(slot) \
	(!XLogRecPtrIsInvalid((slot)->data.invalidated_at) && \
	 XLogRecPtrIsInvalid((slot)->data.restart_lsn))
#endif

/*
 * A generation context: chunks of their exact size, whole blocks freed when
 * all their chunks are (for data freed in roughly the order it came)
 */
#if PG_VERSION_NUM >= 150000
#define CompatGenerationContextCreate(parent, name, init_block, max_block) \
	GenerationContextCreate((parent), (name), 0, (init_block), (max_block))
#else
#define CompatGenerationContextCreate(parent, name, init_block, max_block) \
	GenerationContextCreate((parent), (name), (max_block))
#endif

/*
 * Append s[0..len) as a JSON string, escaped as escape_json() does.
 * PostgreSQL 17 has escape_json_with_len(); before it, escape_json() wants a
 * C string and appends byte by byte, so this copies runs of plain bytes at once.
 */
#if PG_VERSION_NUM >= 170000
#define CompatEscapeJsonLen(out, s, len) escape_json_with_len((out), (s), (len))
#else
#define JSON_BYTES_ONES		UINT64CONST(0x0101010101010101)
#define JSON_BYTES_HIGHS	UINT64CONST(0x8080808080808080)

/* Whether a byte of w (8 bytes of text) needs escaping: < 0x20, '"' or '\\' */
static inline bool
JsonWordNeedsEscape(uint64 w)
{
	uint64		quote = w ^ (JSON_BYTES_ONES * '"');
	uint64		backslash = w ^ (JSON_BYTES_ONES * '\\');

	return ((((w - JSON_BYTES_ONES * 0x20) & ~w) |
			 ((quote - JSON_BYTES_ONES) & ~quote) |
			 ((backslash - JSON_BYTES_ONES) & ~backslash)) & JSON_BYTES_HIGHS) != 0;
}

static inline void
CompatEscapeJsonLen(StringInfo out, const char *s, int len)
{
	const char *run = s;
	const char *end = s + len;
	const char *p = s;

	enlargeStringInfo(out, len + 2);
	out->data[out->len++] = '"';
	while (p < end)
	{
		unsigned char c;

		/* skip 8 plain bytes at a time (most text has nothing to escape) */
		if (end - p >= 8)
		{
			uint64		w;

			memcpy(&w, p, sizeof(w));
			if (!JsonWordNeedsEscape(w))
			{
				p += 8;
				continue;
			}
		}
		c = (unsigned char) *p++;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(out, run, p - 1 - run);
		run = p;
		switch (c)
		{
			case '\b':
				appendStringInfoString(out, "\\b");
				break;
			case '\f':
				appendStringInfoString(out, "\\f");
				break;
			case '\n':
				appendStringInfoString(out, "\\n");
				break;
			case '\r':
				appendStringInfoString(out, "\\r");
				break;
			case '\t':
				appendStringInfoString(out, "\\t");
				break;
			case '"':
				appendStringInfoString(out, "\\\"");
				break;
			case '\\':
				appendStringInfoString(out, "\\\\");
				break;
			default:
				appendStringInfo(out, "\\u%04x", (int) c);
				break;
		}
	}
	appendBinaryStringInfo(out, run, end - run);
	appendStringInfoCharMacro(out, '"');
}
#endif

#endif							/* COSMOS_SINK_COMPAT_H */
