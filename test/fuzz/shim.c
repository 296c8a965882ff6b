/*
 * shim.c
 *		The backend symbols src/cosmos_protocol.c and src/cosmos_auth.c use,
 *		for running them outside the server under libFuzzer.
 *
 * Everything that exists as a real PostgreSQL 15 object outside the postgres
 * binary is NOT here: it is linked from Debian's libpgcommon.a / libpgport.a
 * (StringInfo, psprintf, the JSON lexer/parser, base64, the wchar tables,
 * strtoint, pg_strncasecmp, pg_qsort, pg_snprintf, strlcpy). This file only
 * provides what lives in the postgres binary itself:
 *
 *	- mcxt.c: palloc & co., as malloc'd chunks in a per-input arena that the
 *	  targets free with shim_reset() (the memory context reset the worker
 *	  relies on); MaxAllocSize is enforced as palloc does;
 *	- elog.c: errstart/errfinish & co.; any ereport(ERROR) aborts, because
 *	  the parsers promise never to throw on bad input;
 *	- mbutils.c: GetDatabaseEncoding (settable), pg_verify_mbstr and
 *	  pg_encoding_mbcliplen, written as PostgreSQL 15 writes them on top of
 *	  the real pg_wchar_table;
 *	- json.c: escape_json, as PostgreSQL 15 writes it;
 *	- jsonapi.c: json_errdetail, which PostgreSQL 15 compiles into the backend
 *	  only (#ifndef FRONTEND), with the backend's messages;
 *	- a check on one place where the frontend build of the JSON lexer
 *	  differs from the backend build: a \u escape above U+007F. The backend
 *	  lexer hands it to pg_unicode_to_server(), which throws when the
 *	  database encoding has no such character; the frontend lexer (linked
 *	  here) converts to UTF-8. A non-ASCII escape reaching the lexer while
 *	  the database encoding is not UTF8 is therefore reported as a finding
 *	  (linked with -Wl,--wrap=unicode_to_utf8);
 *	- a check on the other place where the builds differ: the backend parser
 *	  calls check_stack_depth() for every nested array or object, which throws
 *	  "stack depth limit exceeded" from about 13,100 (objects) to 14,500
 *	  (arrays) levels with the default max_stack_depth of 2MB (measured on
 *	  PostgreSQL 15.20). Every JSON text the code under test hands to the
 *	  parser (makeJsonLexContextCstringLen, linked with -Wl,--wrap) is
 *	  measured with the real parser; nesting SHIM_MAX_JSON_DEPTH deep or
 *	  more is reported as that ereport;
 *	- stubs for what only the SQL-callable test wrappers use (fmgr, text,
 *	  jsonb): they abort if ever called.
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "shim.h"

/* ---------------------------------------------------------------------------
 * Findings
 * ------------------------------------------------------------------------- */

void
shim_fail(const char *fmt,...)
{
	va_list		args;

	fflush(stdout);
	fprintf(stderr, "\n==FUZZ FINDING== ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n");
	fflush(stderr);
	abort();
}

/* ---------------------------------------------------------------------------
 * palloc arena (mcxt.c)
 * ------------------------------------------------------------------------- */

#define CHUNK_MAGIC		UINT64CONST(0xC05305F022A11C0C)
#define FRESH_BYTE		0x7E	/* new memory is not zeroed in the backend either */

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	Size		size;
	uint64		magic;
} Chunk;						/* 32 bytes: keeps the user pointer 16-byte aligned */

static Chunk arena = {&arena, &arena, 0, 0};
static size_t live_chunks = 0;

static inline Chunk *
ChunkOf(void *pointer, const char *caller)
{
	Chunk	   *chunk;

	if (pointer == NULL)
		shim_fail("%s(NULL)", caller);
	chunk = (Chunk *) ((char *) pointer - sizeof(Chunk));
	if (chunk->magic != CHUNK_MAGIC)
		shim_fail("%s(%p): not a palloc'd chunk (or already freed)", caller, pointer);
	return chunk;
}

static void *
ChunkAlloc(Size size, bool zero, const char *caller)
{
	Chunk	   *chunk;

	if (!AllocSizeIsValid(size))
		shim_fail("ereport(ERROR) from %s: invalid memory alloc request size %zu",
				  caller, (size_t) size);
	chunk = malloc(sizeof(Chunk) + size);
	if (chunk == NULL)
		shim_fail("ereport(ERROR) from %s: out of memory (%zu bytes)", caller, (size_t) size);
	chunk->size = size;
	chunk->magic = CHUNK_MAGIC;
	chunk->next = arena.next;
	chunk->prev = &arena;
	arena.next->prev = chunk;
	arena.next = chunk;
	live_chunks++;
	memset(chunk + 1, zero ? 0 : FRESH_BYTE, size);
	return chunk + 1;
}

static void
ChunkFree(Chunk *chunk)
{
	chunk->prev->next = chunk->next;
	chunk->next->prev = chunk->prev;
	chunk->magic = 0;
	live_chunks--;
	free(chunk);
}

void *
palloc(Size size)
{
	return ChunkAlloc(size, false, "palloc");
}

void *
palloc0(Size size)
{
	return ChunkAlloc(size, true, "palloc0");
}

void
pfree(void *pointer)
{
	/* the frontend JSON parser linked here frees NULL field names (see shim.h) */
	if (pointer == NULL && SHIM_PFREE_NULL_OK)
		return;
	ChunkFree(ChunkOf(pointer, "pfree"));
}

void *
repalloc(void *pointer, Size size)
{
	Chunk	   *chunk = ChunkOf(pointer, "repalloc");
	Chunk	   *moved;
	Size		old = chunk->size;

	if (!AllocSizeIsValid(size))
		shim_fail("ereport(ERROR) from repalloc: invalid memory alloc request size %zu",
				  (size_t) size);
	/* unlink while realloc may move it */
	chunk->prev->next = chunk->next;
	chunk->next->prev = chunk->prev;
	moved = realloc(chunk, sizeof(Chunk) + size);
	if (moved == NULL)
		shim_fail("ereport(ERROR) from repalloc: out of memory (%zu bytes)", (size_t) size);
	moved->size = size;
	moved->next = arena.next;
	moved->prev = &arena;
	arena.next->prev = moved;
	arena.next = moved;
	if (size > old)
		memset((char *) (moved + 1) + old, FRESH_BYTE, size - old);
	return moved + 1;
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

void
shim_reset(void)
{
	while (arena.next != &arena)
		ChunkFree(arena.next);
}

size_t
shim_live_chunks(void)
{
	return live_chunks;
}

/* ---------------------------------------------------------------------------
 * ereport/elog (elog.c): ERROR and above is a finding; lower levels are quiet
 * ------------------------------------------------------------------------- */

static int	err_level;
static char err_text[1024];

bool
errstart(int elevel, const char *domain)
{
	err_level = elevel;
	err_text[0] = '\0';
	return elevel >= ERROR;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	shim_fail("ereport(%s) at %s:%d in %s(): %s",
			  err_level >= FATAL ? "FATAL" : "ERROR", filename, lineno,
			  funcname ? funcname : "?", err_text);
}

static void
ErrText(const char *fmt, va_list args)
{
	size_t		used = strlen(err_text);

	if (used > 0 && used < sizeof(err_text) - 2)
	{
		strcpy(err_text + used, "; ");
		used += 2;
	}
	pg_vsnprintf(err_text + used, sizeof(err_text) - used, fmt, args);
}

int
errmsg(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	ErrText(fmt, args);
	va_end(args);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	ErrText(fmt, args);
	va_end(args);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	ErrText(fmt, args);
	va_end(args);
	return 0;
}

int
errcode(int sqlerrcode)
{
	return 0;
}

/* ---------------------------------------------------------------------------
 * Encodings (mbutils.c), on the real pg_wchar_table from libpgcommon
 * ------------------------------------------------------------------------- */

static int	database_encoding = PG_UTF8;

void
shim_set_database_encoding(int encoding)
{
	database_encoding = encoding;
}

int
GetDatabaseEncoding(void)
{
	return database_encoding;
}

bool
pg_verify_mbstr(int encoding, const char *mbstr, int len, bool noError)
{
	int			oklen = pg_wchar_table[encoding].mbverifystr((const unsigned char *) mbstr, len);

	if (oklen != len)
	{
		if (noError)
			return false;
		shim_fail("ereport(ERROR) from pg_verify_mbstr: invalid byte sequence for encoding %d",
				  encoding);
	}
	return true;
}

int
pg_encoding_mbcliplen(int encoding, const char *mbstr, int len, int limit)
{
	int			clen = 0;

	if (pg_encoding_max_length(encoding) == 1)
	{
		/* cliplen() */
		len = Min(len, limit);
		while (clen < len && mbstr[clen])
			clen++;
		return clen;
	}
	while (len > 0 && *mbstr)
	{
		int			l = pg_wchar_table[encoding].mblen((const unsigned char *) mbstr);

		if (clen + l > limit)
			break;
		clen += l;
		if (clen == limit)
			break;
		len -= l;
		mbstr += l;
	}
	return clen;
}

/*
 * The frontend JSON lexer's \u conversion: see the header comment. Where the
 * lexer inlines unicode_to_utf8() (17 on), the lexer's input is scanned instead
 * for a \u escape above U+007F (HighEscapeCheck).
 */
#if SHIM_WRAP_UNICODE_TO_UTF8
extern unsigned char *__real_unicode_to_utf8(pg_wchar c, unsigned char *utf8string);
extern unsigned char *__wrap_unicode_to_utf8(pg_wchar c, unsigned char *utf8string);

unsigned char *
__wrap_unicode_to_utf8(pg_wchar c, unsigned char *utf8string)
{
	if (c > 0x7F && database_encoding != PG_UTF8)
		shim_fail("the JSON lexer de-escaped \\u%04X in a database of encoding %d: the backend "
				  "lexer calls pg_unicode_to_server() here, which throws when the encoding has "
				  "no such character", (unsigned) c, database_encoding);
	return __real_unicode_to_utf8(c, utf8string);
}

static void
HighEscapeCheck(const char *json, int len, bool need_escapes)
{
}
#else
/* A \u escape above U+007F in a text the lexer will de-escape, outside a UTF8 database */
static void
HighEscapeCheck(const char *json, int len, bool need_escapes)
{
	const char *p = json;
	const char *end = json + len;

	if (!need_escapes || database_encoding == PG_UTF8)
		return;
	while (p < end && (p = memchr(p, '\\', end - p)) != NULL)
	{
		if (end - p >= 6 && p[1] == 'u' &&
			!(p[2] == '0' && p[3] == '0' && p[4] >= '0' && p[4] <= '7'))
			shim_fail("the JSON lexer would de-escape \\u%.4s in a database of encoding %d: the "
					  "backend lexer calls pg_unicode_to_server() here, which throws when the "
					  "encoding has no such character", p + 2, database_encoding);
		p += Min(2, end - p);
	}
}
#endif

/* The backend parser's check_stack_depth(): see the header comment */
extern JsonLexContext *__real_makeJsonLexContextCstringLen(SHIM_LEXER_PARAMS);
extern JsonLexContext *__wrap_makeJsonLexContextCstringLen(SHIM_LEXER_PARAMS);

typedef struct DepthState
{
	int			depth;
	int			max;
} DepthState;

static CompatJsonSemResult
DepthIn(void *state)
{
	DepthState *st = state;

	if (++st->depth > st->max)
		st->max = st->depth;
	return COMPAT_JSON_SEM_RESULT(false);
}

static CompatJsonSemResult
DepthOut(void *state)
{
	((DepthState *) state)->depth--;
	return COMPAT_JSON_SEM_RESULT(false);
}

/* How deep the recursive parser goes into a JSON text (before any syntax error) */
static int
ParserDepth(const char *json, int len, int encoding)
{
	DepthState	st = {0};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = DepthIn,
		.object_end = DepthOut,
		.array_start = DepthIn,
		.array_end = DepthOut,
	};
	int			opens = 0;

	/* cheap bound first: each level needs a '[' or '{' */
	for (int i = 0; i < len && opens < SHIM_MAX_JSON_DEPTH; i++)
		opens += json[i] == '[' || json[i] == '{';
	if (opens < SHIM_MAX_JSON_DEPTH)
		return opens;
	pg_parse_json(__real_makeJsonLexContextCstringLen(COMPAT_JSON_LEXER_ARGS(json, len, encoding, true)),
				  &sem);
	return st.max;
}

JsonLexContext *
__wrap_makeJsonLexContextCstringLen(SHIM_LEXER_PARAMS)
{
	int			depth = ParserDepth(json, len, encoding);

	if (depth >= SHIM_MAX_JSON_DEPTH)
		shim_fail("ereport(ERROR) from check_stack_depth: stack depth limit exceeded (the "
				  "backend JSON parser would recurse %d levels into a %d-byte text)", depth, (int) len);
	HighEscapeCheck(json, (int) len, need_escapes);
	return __real_makeJsonLexContextCstringLen(SHIM_LEXER_PASS);
}

JsonLexContext *
shim_make_lexer(char *json, int len, int encoding, bool need_escapes)
{
	return __real_makeJsonLexContextCstringLen(COMPAT_JSON_LEXER_ARGS(json, len, encoding,
																	  need_escapes));
}

/* ---------------------------------------------------------------------------
 * escape_json (utils/adt/json.c, PostgreSQL 15)
 * ------------------------------------------------------------------------- */

/* One byte of a JSON string, escaped as escape_json() does */
static void
EscapeJsonChar(StringInfo buf, char c)
{
	switch (c)
	{
		case '\b':
			appendStringInfoString(buf, "\\b");
			break;
		case '\f':
			appendStringInfoString(buf, "\\f");
			break;
		case '\n':
			appendStringInfoString(buf, "\\n");
			break;
		case '\r':
			appendStringInfoString(buf, "\\r");
			break;
		case '\t':
			appendStringInfoString(buf, "\\t");
			break;
		case '"':
			appendStringInfoString(buf, "\\\"");
			break;
		case '\\':
			appendStringInfoString(buf, "\\\\");
			break;
		default:
			if ((unsigned char) c < ' ')
				appendStringInfo(buf, "\\u%04x", (int) c);
			else
				appendStringInfoCharMacro(buf, c);
			break;
	}
}

void
escape_json(StringInfo buf, const char *str)
{
	appendStringInfoCharMacro(buf, '"');
	for (const char *p = str; *p; p++)
		EscapeJsonChar(buf, *p);
	appendStringInfoCharMacro(buf, '"');
}

#if COMPAT_HAS_ESCAPE_JSON_WITH_LEN
/* escape_json_with_len (utils/adt/json.c, 18): every byte of str[0..len), NULs as \u0000 */
void
escape_json_with_len(StringInfo buf, const char *str, int len)
{
	appendStringInfoCharMacro(buf, '"');
	for (int i = 0; i < len; i++)
		EscapeJsonChar(buf, str[i]);
	appendStringInfoCharMacro(buf, '"');
}
#endif

/* ---------------------------------------------------------------------------
 * json_errdetail (common/jsonapi.c, backend build of PostgreSQL 15; from 17 on
 * libpgcommon's frontend build has it, with the same messages)
 * ------------------------------------------------------------------------- */
#if !COMPAT_FRONTEND_JSON_ERRDETAIL

static char *
extract_token(JsonLexContext *lex)
{
	int			toklen = lex->token_terminator - lex->token_start;
	char	   *token = palloc(toklen + 1);

	memcpy(token, lex->token_start, toklen);
	token[toklen] = '\0';
	return token;
}

char *
json_errdetail(JsonParseErrorType error, JsonLexContext *lex)
{
	switch (error)
	{
		case JSON_SUCCESS:
			break;
		case JSON_ESCAPING_INVALID:
			return psprintf("Escape sequence \"\\%s\" is invalid.", extract_token(lex));
		case JSON_ESCAPING_REQUIRED:
			return psprintf("Character with value 0x%02x must be escaped.",
							(unsigned char) *(lex->token_terminator));
		case JSON_EXPECTED_END:
			return psprintf("Expected end of input, but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_ARRAY_FIRST:
			return psprintf("Expected array element or \"]\", but found \"%s\".",
							extract_token(lex));
		case JSON_EXPECTED_ARRAY_NEXT:
			return psprintf("Expected \",\" or \"]\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_COLON:
			return psprintf("Expected \":\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_JSON:
			return psprintf("Expected JSON value, but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_MORE:
			return "The input string ended unexpectedly.";
		case JSON_EXPECTED_OBJECT_FIRST:
			return psprintf("Expected string or \"}\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_OBJECT_NEXT:
			return psprintf("Expected \",\" or \"}\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_STRING:
			return psprintf("Expected string, but found \"%s\".", extract_token(lex));
		case JSON_INVALID_TOKEN:
			return psprintf("Token \"%s\" is invalid.", extract_token(lex));
		case JSON_UNICODE_CODE_POINT_ZERO:
			return "\\u0000 cannot be converted to text.";
		case JSON_UNICODE_ESCAPE_FORMAT:
			return "\"\\u\" must be followed by four hexadecimal digits.";
		case JSON_UNICODE_HIGH_ESCAPE:
			/* unreachable in the backend, where the lexer converts instead */
			return "Unicode escape values cannot be used for code point values above 007F when the encoding is not UTF8.";
		case JSON_UNICODE_HIGH_SURROGATE:
			return "Unicode high surrogate must not follow a high surrogate.";
		case JSON_UNICODE_LOW_SURROGATE:
			return "Unicode low surrogate must follow a high surrogate.";
	}
	shim_fail("ereport(ERROR) from json_errdetail: unexpected json parse error type: %d",
			  (int) error);
}
#endif

/* ---------------------------------------------------------------------------
 * Used only by the SQL-callable test wrappers, never by the fuzz targets
 * ------------------------------------------------------------------------- */

#define UNREACHABLE(name) shim_fail("%s() called: only the SQL test wrappers use it", name)

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	UNREACHABLE("pg_detoast_datum");
}

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	UNREACHABLE("pg_detoast_datum_packed");
}

text *
cstring_to_text(const char *s)
{
	UNREACHABLE("cstring_to_text");
}

text *
cstring_to_text_with_len(const char *s, int len)
{
	UNREACHABLE("cstring_to_text_with_len");
}

char *
text_to_cstring(const text *t)
{
	UNREACHABLE("text_to_cstring");
}

char *
JsonbToCString(StringInfo out, JsonbContainer *in, int estimated_len)
{
	UNREACHABLE("JsonbToCString");
}

void
deconstruct_array(ArrayType *array, Oid elmtype, int elmlen, bool elmbyval, char elmalign,
				  Datum **elemsp, bool **nullsp, int *nelemsp)
{
	UNREACHABLE("deconstruct_array");
}

JsonbValue *
getIthJsonbValueFromContainer(JsonbContainer *sheader, uint32 i)
{
	UNREACHABLE("getIthJsonbValueFromContainer");
}

JsonbValue *
getKeyJsonValueFromContainer(JsonbContainer *container, const char *keyVal, int keyLen,
							 JsonbValue *res)
{
	UNREACHABLE("getKeyJsonValueFromContainer");
}
