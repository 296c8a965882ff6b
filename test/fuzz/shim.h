/*
 * shim.h
 *		What the fuzz targets need from shim.c beyond the backend symbols it
 *		provides: the per-input palloc arena, the database encoding the code
 *		under test sees, and a way to report a finding.
 */
#ifndef COSMOS_FUZZ_SHIM_H
#define COSMOS_FUZZ_SHIM_H

#include "postgres.h"

#include "compat.h"

/* Free every chunk palloc'd since the last reset (a memory context reset) */
extern void shim_reset(void);

/* Chunks palloc'd and not yet pfree'd (for the targets' own statistics) */
extern size_t shim_live_chunks(void);

/* What GetDatabaseEncoding() returns from now on (PG_UTF8 at start) */
extern void shim_set_database_encoding(int encoding);

/*
 * JSON nested this deep, handed to the parser by the code under test, is
 * reported as the backend's "stack depth limit exceeded" (see shim.c)
 */
#define SHIM_MAX_JSON_DEPTH	10000

/* A JSON lexer for the targets' own checks, outside that accounting */
struct JsonLexContext;
extern struct JsonLexContext *shim_make_lexer(char *json, int len, int encoding,
											  bool need_escapes);

/*
 * The parameters of makeJsonLexContextCstringLen() as this major declares it
 * (shim.c wraps it), and how to pass them on
 */
#if PG_VERSION_NUM >= 170000
#define SHIM_LEXER_PARAMS \
	JsonLexContext *lex, const char *json, size_t len, int encoding, bool need_escapes
#define SHIM_LEXER_PASS lex, json, len, encoding, need_escapes
#else
#define SHIM_LEXER_PARAMS char *json, int len, int encoding, bool need_escapes
#define SHIM_LEXER_PASS json, len, encoding, need_escapes
#endif

/*
 * Whether pfree(NULL) is let through: 18's frontend JSON parser (linked here)
 * frees field names that may be NULL, as the frontend pfree allows (the
 * backend build skips NULL); on older majors pfree(NULL) is a finding
 */
#define SHIM_PFREE_NULL_OK (PG_VERSION_NUM >= 180000)

/* Whether the frontend lexer calls unicode_to_utf8() out of line (17 inlines it) */
#define SHIM_WRAP_UNICODE_TO_UTF8 (PG_VERSION_NUM < 170000)

/* Report a finding: print the message and abort(), so libFuzzer saves the input */
pg_noreturn extern void shim_fail(const char *fmt,...) pg_attribute_printf(1, 2);

#endif							/* COSMOS_FUZZ_SHIM_H */
