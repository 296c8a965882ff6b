/*
 * compat.h
 *		Differences between the PostgreSQL majors cosmos_sink supports (15, 17
 *		and 18; 16 should build but is untested), kept in one place so the
 *		rest of the code reads as if there were only one version. No other
 *		source file tests PG_VERSION_NUM.
 */
#ifndef COSMOS_SINK_COMPAT_H
#define COSMOS_SINK_COMPAT_H

#include "postgres.h"

/* 13 and 14 are not supported (nothing tests them) */
#if PG_VERSION_NUM < 150000
#error "cosmos_sink needs PostgreSQL 15 or later"
#endif

#include "catalog/pg_class.h"
#include "common/base64.h"
#include "common/jsonapi.h"
#include "replication/reorderbuffer.h"
#include "replication/slot.h"
#include "lib/stringinfo.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/json.h"
#include "utils/memutils.h"

/* VARDATA_ANY and friends moved from postgres.h to varatt.h in 16 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/* A function that does not return: 18 writes pg_noreturn before the declaration */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/* Commit timestamp of a decoded transaction */
#define CompatTxnCommitTime(txn) ((txn)->xact_time.commit_time)

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

/* Flush position of WAL (the timeline argument came in 15) */
#define CompatGetFlushRecPtr() GetFlushRecPtr(NULL)

/* Progress report from an output plugin's commit callback */
#define CompatOutputPluginUpdateProgress(ctx, skipped) \
	OutputPluginUpdateProgress((ctx), (skipped))

/* Whether a replication slot was invalidated (its WAL is gone) */
/*
 * Failover slots (17 and later): a slot copied from a primary by slot
 * synchronisation, whether a slot is a failover slot, changing that, and
 * whether the standbys of synchronized_standby_slots have received WAL up to
 * an LSN. Before 17 there are none: never synced, never failover, no wait.
 */
#if PG_VERSION_NUM >= 170000
#define CompatSlotSynced(slot) ((slot)->data.synced)
#define CompatSlotFailover(slot) ((slot)->data.failover)
#define CompatStandbysHaveWal(lsn) StandbySlotsHaveCaughtup((lsn), DEBUG1)
#define CompatStandbySlotsSetting() (synchronized_standby_slots)
#else
#define CompatSlotSynced(slot) false
#define CompatSlotFailover(slot) false
#define CompatStandbysHaveWal(lsn) true
#define CompatStandbySlotsSetting() ""
#endif
#if PG_VERSION_NUM >= 180000
#define CompatSlotAlterFailover(name, failover) ReplicationSlotAlter((name), &(failover), NULL)
#elif PG_VERSION_NUM >= 170000
#define CompatSlotAlterFailover(name, failover) ReplicationSlotAlter((name), (failover))
#else
#define CompatSlotAlterFailover(name, failover) ((void) (name), (void) (failover))
#endif

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
#define CompatGenerationContextCreate(parent, name, init_block, max_block) \
	GenerationContextCreate((parent), (name), 0, (init_block), (max_block))

/*
 * Append s[0..len) as a JSON string, escaped as escape_json() does.
 * PostgreSQL 18 has escape_json_with_len(); before it, escape_json() wants a
 * C string and appends byte by byte, so this copies runs of plain bytes at once.
 */
#define COMPAT_HAS_ESCAPE_JSON_WITH_LEN (PG_VERSION_NUM >= 180000)
#if COMPAT_HAS_ESCAPE_JSON_WITH_LEN
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


/* JSON semantic actions return a status from 16 on (nothing before) */
#if PG_VERSION_NUM >= 160000
typedef JsonParseErrorType CompatJsonSemResult;
#define COMPAT_JSON_SEM_RESULT(failed) ((failed) ? JSON_SEM_ACTION_FAILED : JSON_SUCCESS)
#else
typedef void CompatJsonSemResult;
#define COMPAT_JSON_SEM_RESULT(failed)
#endif

/*
 * Arguments of makeJsonLexContextCstringLen() for a new lexer over s[0..len):
 * 17 takes a lexer to fill first (NULL: allocate one) and a const text
 */
#if PG_VERSION_NUM >= 170000
#define COMPAT_JSON_LEXER_ARGS(s, len, encoding, need_escapes) \
	NULL, (s), (len), (encoding), (need_escapes)
#else
#define COMPAT_JSON_LEXER_ARGS(s, len, encoding, need_escapes) \
	(char *) (s), (int) (len), (encoding), (need_escapes)
#endif

/* Whether libpgcommon's frontend build has json_errdetail() (from 17 on) */
#define COMPAT_FRONTEND_JSON_ERRDETAIL (PG_VERSION_NUM >= 170000)

/* A lexer over s[0..len) that de-escapes strings (17 takes a lexer to fill, or NULL) */
static inline JsonLexContext *
CompatMakeJsonLexer(const char *s, size_t len, int encoding)
{
	return makeJsonLexContextCstringLen(COMPAT_JSON_LEXER_ARGS(s, len, encoding, true));
}

/* Free a lexer from CompatMakeJsonLexer (17 has freeJsonLexContext) */
static inline void
CompatFreeJsonLexer(JsonLexContext *lex)
{
#if PG_VERSION_NUM >= 170000
	freeJsonLexContext(lex);
#else
	if (lex->strval != NULL)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);
#endif
}

/*
 * Length of the UTF-8 character at s from its first byte, as pg_utf_mblen()
 * says; that symbol is pg_utf_mblen_private in the servers of 17 and 18
 */
static inline int
CompatUtf8CharLen(const unsigned char *s)
{
	if ((*s & 0x80) == 0)
		return 1;
	if ((*s & 0xe0) == 0xc0)
		return 2;
	if ((*s & 0xf0) == 0xe0)
		return 3;
	if ((*s & 0xf8) == 0xf0)
		return 4;
	return 1;
}

/* Base64 of bytes into dst (18 types the bytes as uint8) */
static inline int
CompatB64Encode(const unsigned char *src, int len, char *dst, int dstlen)
{
#if PG_VERSION_NUM >= 180000
	return pg_b64_encode(src, len, dst, dstlen);
#else
	return pg_b64_encode((const char *) src, len, dst, dstlen);
#endif
}

/* Bytes of base64 text into dst, -1 if it is not base64 (18: uint8 output) */
static inline int
CompatB64Decode(const char *src, int len, char *dst, int dstlen)
{
#if PG_VERSION_NUM >= 180000
	return pg_b64_decode(src, len, (uint8 *) dst, dstlen);
#else
	return pg_b64_decode(src, len, dst, dstlen);
#endif
}

/* A wait event set that lives as long as the process (17 asks for a resource owner: none) */
#if PG_VERSION_NUM >= 170000
#define CompatCreateWaitEventSet(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define CompatCreateWaitEventSet(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/* Acquire a slot by name; 18 can refuse an invalidated slot at once (we ask it to) */
#if PG_VERSION_NUM >= 180000
#define CompatReplicationSlotAcquire(name, nowait) ReplicationSlotAcquire((name), (nowait), true)
#else
#define CompatReplicationSlotAcquire(name, nowait) ReplicationSlotAcquire((name), (nowait))
#endif

/*
 * SQL that creates a logical slot ($1 name, $2 plugin, $3 failover): 17 can
 * mark it for failover (synchronised to standbys); before 17 $3 is ignored
 */
#if PG_VERSION_NUM >= 170000
#define COMPAT_CREATE_SLOT_SQL \
	"SELECT pg_catalog.pg_create_logical_replication_slot($1::name, $2::name, false, false, $3::bool)"
#define COMPAT_SLOT_FAILOVER_SUPPORTED true
#else
#define COMPAT_CREATE_SLOT_SQL \
	"SELECT pg_catalog.pg_create_logical_replication_slot($1::name, $2::name)"
#define COMPAT_SLOT_FAILOVER_SUPPORTED false
#endif

#endif							/* COSMOS_SINK_COMPAT_H */
