/*
 * shim.h
 *		What the fuzz targets need from shim.c beyond the backend symbols it
 *		provides: the per-input palloc arena, the database encoding the code
 *		under test sees, and a way to report a finding.
 */
#ifndef COSMOS_FUZZ_SHIM_H
#define COSMOS_FUZZ_SHIM_H

#include "postgres.h"

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

/* Report a finding: print the message and abort(), so libFuzzer saves the input */
extern void shim_fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

#endif							/* COSMOS_FUZZ_SHIM_H */
