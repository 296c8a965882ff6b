/*
 * cosmos_protocol.c
 *		Cosmos DB wire formats: batch/bulk request bodies, the partition-key
 *		header, URL-encoded ids, and the parsing of batch, container, pkranges
 *		and error responses. Parsers return false and a message, never throw.
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "common/string.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "compat.h"
#include "cosmos.h"
#include "cosmos_json.h"

/*
 * Why Cosmos DB would refuse an id (SPEC section 4), or NULL if it is fine:
 * empty, over 1023 bytes, or holding / \ ? #.
 */
const char *
CosmosInvalidIdReason(const char *id, int id_len)
{
	int			i;

	if (id_len <= 0)
		return "id is empty";
	if (id_len > COSMOS_MAX_ID_BYTES)
		return "id is longer than 1023 bytes, the most Cosmos DB allows";
	for (i = 0; i < id_len; i++)
	{
		switch (id[i])
		{
			case '/':
				return "id contains \"/\", which Cosmos DB does not allow";
			case '\\':
				return "id contains \"\\\", which Cosmos DB does not allow";
			case '?':
				return "id contains \"?\", which Cosmos DB does not allow";
			case '#':
				return "id contains \"#\", which Cosmos DB does not allow";
		}
	}
	return NULL;
}

/* Deeper JSON is refused before parsing (documents nest at most 128 levels) */
#define JSON_MAX_NESTING 256

#define ERROR_MESSAGE_MAX	300		/* CosmosErrorMessage of a JSON body */
#define ERROR_RAW_MAX		200		/* CosmosErrorMessage of anything else */
#define ERROR_DETAIL_MAX	200		/* parser detail quoted in a message */

/* ---------------------------------------------------------------------------
 * Shared helpers
 * ------------------------------------------------------------------------- */

/*
 * Whether the lexer would convert a non-ASCII \u escape to the server encoding:
 * in a database that is not UTF8 that conversion throws when it fails.
 */
static bool
HasConvertingEscape(const char *s, size_t len)
{
	const char *p = s;
	const char *end = s + len;

	if (GetDatabaseEncoding() == PG_UTF8)
		return false;
	while (p < end && (p = memchr(p, '\\', end - p)) != NULL)
	{
		if (end - p >= 6 && p[1] == 'u' &&
			!(p[2] == '0' && p[3] == '0' && p[4] >= '0' && p[4] <= '7'))
			return true;
		p += Min(2, end - p);	/* skip the escaped character */
	}
	return false;
}

/*
 * Deepest nesting of arrays and objects, outside strings. Cosmos DB answers
 * nest a few levels (documents at most 128); the server's JSON parser checks
 * the stack at every level and throws, which must not happen on network input.
 */
static int
NestingDepth(const char *body, size_t len)
{
	int			depth = 0;
	int			deepest = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			depth++;			/* not inside Max(): the macro evaluates twice */
			deepest = Max(deepest, depth);
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return deepest;
}

/*
 * Run the non-throwing JSON parser over network data with the given actions;
 * false and a message naming `what` on invalid UTF-8 or invalid JSON.
 */
bool
ParseJson(const char *what, const char *body, size_t len, JsonSemAction *sem,
		  char **errmsg)
{
	JsonLexContext *lex;
	JsonParseErrorType rc;

	if (len > INT_MAX / 2)
	{
		*errmsg = psprintf("%s is too large (%zu bytes)", what, len);
		return false;
	}
	if (!pg_verify_mbstr(PG_UTF8, body, (int) len, true))
	{
		*errmsg = psprintf("%s is not valid UTF-8", what);
		return false;
	}
	if (HasConvertingEscape(body, len))
	{
		*errmsg = psprintf("%s has non-ASCII \\u escapes, which need a UTF8 database", what);
		return false;
	}
	if (NestingDepth(body, len) > JSON_MAX_NESTING)
	{
		/* the parser would hit check_stack_depth() and throw: refuse first */
		*errmsg = psprintf("%s is nested more than %d levels deep", what, JSON_MAX_NESTING);
		return false;
	}

	lex = CompatMakeJsonLexer(body, len, PG_UTF8);
	rc = pg_parse_json(lex, sem);
	if (rc != JSON_SUCCESS)
	{
		char	   *detail = json_errdetail(rc, lex);
		int			dlen = pg_encoding_mbcliplen(PG_UTF8, detail, strlen(detail),
												 ERROR_DETAIL_MAX);

		*errmsg = psprintf("%s is not valid JSON: %.*s", what, dlen, detail);
	}
	CompatFreeJsonLexer(lex);
	return rc == JSON_SUCCESS;
}

/* Record the first semantic problem found by a parse; later ones are noise */
void
SetParseError(char **error, const char *fmt,...)
{
	va_list		args;
	StringInfoData buf;

	if (*error != NULL)
		return;
	initStringInfo(&buf);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	*error = buf.data;
}

/* An integral JSON number that fits an int */
static bool
JsonTokenInt(const char *token, JsonTokenType type, int *value)
{
	char	   *end;
	int			v;

	if (type != JSON_TOKEN_NUMBER)
		return false;
	errno = 0;
	v = strtoint(token, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*value = v;
	return true;
}

/* Any JSON number as a double */
bool
JsonTokenDouble(const char *token, JsonTokenType type, double *value)
{
	char	   *end;
	double		v;

	if (type != JSON_TOKEN_NUMBER)
		return false;
	errno = 0;
	v = strtod(token, &end);
	if (errno != 0 || *end != '\0' || isinf(v))
		return false;
	*value = v;
	return true;
}

/* ---------------------------------------------------------------------------
 * Request bodies
 * ------------------------------------------------------------------------- */

/* Append an op's JSON up to its document (all of it but "}" for a delete) */
static void
AppendOpHead(StringInfo out, const CosmosOp *op)
{
	if (op->kind == COSMOS_OP_DELETE)
	{
		appendStringInfoString(out, "{\"operationType\":\"Delete\",\"id\":");
		CompatEscapeJsonLen(out, op->id, op->id_len);
		appendStringInfoString(out, ",\"partitionKey\":");
		CompatEscapeJsonLen(out, op->pk_json, op->pk_len);
	}
	else
	{
		appendStringInfoString(out, "{\"operationType\":\"Upsert\",\"partitionKey\":");
		CompatEscapeJsonLen(out, op->pk_json, op->pk_len);
		appendStringInfoString(out, ",\"resourceBody\":");
	}
}

/* Append one op as a JSON object; the upsert document goes in verbatim */
static void
AppendOp(StringInfo out, const CosmosOp *op)
{
	AppendOpHead(out, op);
	if (op->kind == COSMOS_OP_UPSERT)
		appendBinaryStringInfo(out, op->doc, op->doc_len);
	appendStringInfoCharMacro(out, '}');
}

/* Start the JSON array body of a batch or bulk request (out holds only the body) */
void
CosmosBodyStart(StringInfo out)
{
	appendStringInfoChar(out, '[');
}

/*
 * Add an op to a body, unless the body would then pass max_bytes with its
 * closing "]". The first op always goes in (alone over the limit, Cosmos DB
 * refuses it and it is parked). Returns whether the op was added.
 */
bool
CosmosBodyAddOp(StringInfo out, const CosmosOp *op, int max_bytes)
{
	int			mark = out->len;
	bool		first = out->len <= 1;

	/* a document that cannot fit is not copied in just to be taken out */
	if (!first && (Size) out->len + op->doc_len + 2 > (Size) max_bytes)
		return false;
	if (!first)
		appendStringInfoCharMacro(out, ',');
	AppendOp(out, op);
	if (first || out->len + 1 <= max_bytes)
		return true;
	out->len = mark;
	out->data[mark] = '\0';
	return false;
}

/* Close a body started by CosmosBodyStart */
void
CosmosBodyFinish(StringInfo out)
{
	appendStringInfoChar(out, ']');
}

/* ---------------------------------------------------------------------------
 * Partition-key header and URL encoding
 * ------------------------------------------------------------------------- */

typedef struct PkHeaderParse
{
	StringInfo	out;
	StringInfoData scratch;		/* escape_json output before ASCII escaping */
	int			depth;
	char	   *error;
} PkHeaderParse;

/*
 * Append a UTF-8 string as a JSON string, every character from U+007F up as
 * \uXXXX (as the JS SDK does): header values allow no DEL and no 8-bit bytes
 */
static void
AppendAsciiJsonString(PkHeaderParse *st, const char *s)
{
	const unsigned char *p;

	resetStringInfo(&st->scratch);
	escape_json(&st->scratch, s);
	p = (const unsigned char *) st->scratch.data;
	while (*p)
	{
		pg_wchar	c;

		if (*p < 0x7F)
		{
			appendStringInfoChar(st->out, (char) *p++);
			continue;
		}
		c = utf8_to_unicode(p);
		p += CompatUtf8CharLen(p);
		if (c > 0xFFFF)
		{
			c -= 0x10000;
			appendStringInfo(st->out, "\\u%04x\\u%04x",
							 (unsigned) (0xD800 + (c >> 10)),
							 (unsigned) (0xDC00 + (c & 0x3FF)));
		}
		else
			appendStringInfo(st->out, "\\u%04x", (unsigned) c);
	}
}

/* Append "," unless the value is the first of its array or object */
static void
PkHeaderSeparate(PkHeaderParse *st)
{
	char		last = st->out->data[st->out->len - 1];

	if (last != '[' && last != '{')
		appendStringInfoChar(st->out, ',');
}

/* Re-emit "{"; the partition key itself must be an array */
static SEM_ACTION
PkHeaderObjectStart(void *state)
{
	PkHeaderParse *st = state;

	if (st->depth++ == 0)
		SetParseError(&st->error, "partition key is not a JSON array");
	appendStringInfoChar(st->out, '{');
	return SEM_OK;
}

/* Re-emit "}" */
static SEM_ACTION
PkHeaderObjectEnd(void *state)
{
	PkHeaderParse *st = state;

	st->depth--;
	appendStringInfoChar(st->out, '}');
	return SEM_OK;
}

/* Re-emit "[" */
static SEM_ACTION
PkHeaderArrayStart(void *state)
{
	PkHeaderParse *st = state;

	st->depth++;
	appendStringInfoChar(st->out, '[');
	return SEM_OK;
}

/* Re-emit "]" */
static SEM_ACTION
PkHeaderArrayEnd(void *state)
{
	PkHeaderParse *st = state;

	st->depth--;
	appendStringInfoChar(st->out, ']');
	return SEM_OK;
}

/* Separate array elements */
static SEM_ACTION
PkHeaderElementStart(void *state, bool isnull)
{
	PkHeaderSeparate(state);
	return SEM_OK;
}

/* Re-emit a field name and its colon */
static SEM_ACTION
PkHeaderFieldStart(void *state, char *fname, bool isnull)
{
	PkHeaderParse *st = state;

	PkHeaderSeparate(st);
	AppendAsciiJsonString(st, fname);
	appendStringInfoChar(st->out, ':');
	pfree(fname);
	return SEM_OK;
}

/* Re-emit a scalar: strings ASCII-escaped, numbers and literals as written */
static SEM_ACTION
PkHeaderScalar(void *state, char *token, JsonTokenType tokentype)
{
	PkHeaderParse *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "partition key is not a JSON array");
	else if (tokentype == JSON_TOKEN_STRING)
		AppendAsciiJsonString(st, token);
	else
		appendStringInfoString(st->out, token);
	pfree(token);
	return SEM_OK;
}

/* Re-emit a partition key JSON array as compact 7-bit ASCII JSON; false and a message if invalid */
static bool
AppendPkHeader(StringInfo out, const char *pk_json, int pk_len, char **errmsg)
{
	PkHeaderParse st = {.out = out};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = PkHeaderObjectStart,
		.object_end = PkHeaderObjectEnd,
		.array_start = PkHeaderArrayStart,
		.array_end = PkHeaderArrayEnd,
		.array_element_start = PkHeaderElementStart,
		.object_field_start = PkHeaderFieldStart,
		.scalar = PkHeaderScalar,
	};
	int			start = out->len;
	bool		ok;

	initStringInfo(&st.scratch);
	ok = ParseJson("partition key", pk_json, pk_len, &sem, errmsg);
	pfree(st.scratch.data);
	if (ok && st.error != NULL)
	{
		ok = false;
		*errmsg = st.error;
	}
	if (!ok)
	{
		out->len = start;
		out->data[start] = '\0';
	}
	return ok;
}

/* Append the x-ms-documentdb-partitionkey value; false if pk_json is not a valid JSON array */
bool
CosmosAppendPartitionKeyHeader(StringInfo out, const char *pk_json, int pk_len)
{
	char	   *errmsg = NULL;

	if (AppendPkHeader(out, pk_json, pk_len, &errmsg))
		return true;
	pfree(errmsg);
	return false;
}

/* Whether a byte is RFC 3986 unreserved (kept as is in a URL) */
static inline bool
IsUrlUnreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
}

/* Percent-encode every byte but the unreserved ones, uppercase hex */
void
CosmosAppendUrlEncoded(StringInfo out, const char *s, int len)
{
	static const char hex[] = "0123456789ABCDEF";

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (IsUrlUnreserved(c))
			appendStringInfoChar(out, (char) c);
		else
		{
			appendStringInfoChar(out, '%');
			appendStringInfoChar(out, hex[c >> 4]);
			appendStringInfoChar(out, hex[c & 0x0F]);
		}
	}
}

/* ---------------------------------------------------------------------------
 * Batch and bulk responses: [{"statusCode":..,"subStatusCode":..,...}, ...]
 * ------------------------------------------------------------------------- */

typedef enum BatchField
{
	BATCH_OTHER,
	BATCH_STATUS,
	BATCH_SUBSTATUS,
	BATCH_CHARGE,
	BATCH_RETRY
} BatchField;

typedef struct BatchParse
{
	int			depth;			/* 1 in the array, 2 in a result object */
	int			count;			/* result objects seen */
	BatchField	field;			/* current field of the current result */
	CosmosOpResult *results;
	int			nops;
	char	   *error;
} BatchParse;

/* The result being filled, or NULL past nops (counted, then reported) */
static CosmosOpResult *
BatchCurrent(BatchParse *st)
{
	return st->count <= st->nops ? &st->results[st->count - 1] : NULL;
}

/* A result object starts: fill in the defaults; status -1 means not seen */
static SEM_ACTION
BatchObjectStart(void *state)
{
	BatchParse *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "batch response is not a JSON array");
	else if (st->depth == 1)
	{
		CosmosOpResult *r;

		st->count++;
		st->field = BATCH_OTHER;
		if ((r = BatchCurrent(st)) != NULL)
		{
			r->status = -1;
			r->substatus = 0;
			r->request_charge = 0;
			r->retry_after_ms = 0;
		}
	}
	st->depth++;
	return SEM_OK;
}

/* Leave an object */
static SEM_ACTION
BatchObjectEnd(void *state)
{
	((BatchParse *) state)->depth--;
	return SEM_OK;
}

/* The top-level array opens; an array as a result is an error */
static SEM_ACTION
BatchArrayStart(void *state)
{
	BatchParse *st = state;

	if (st->depth == 1)
	{
		SetParseError(&st->error, "batch response result %d is not an object", ++st->count);
		st->field = BATCH_OTHER;
	}
	st->depth++;
	return SEM_OK;
}

/* Leave an array */
static SEM_ACTION
BatchArrayEnd(void *state)
{
	((BatchParse *) state)->depth--;
	return SEM_OK;
}

/* Note which field of a result comes next; fields of nested values are skipped */
static SEM_ACTION
BatchFieldStart(void *state, char *fname, bool isnull)
{
	BatchParse *st = state;

	if (st->depth == 2)
	{
		if (strcmp(fname, "statusCode") == 0)
			st->field = BATCH_STATUS;
		else if (strcmp(fname, "subStatusCode") == 0)
			st->field = BATCH_SUBSTATUS;
		else if (strcmp(fname, "requestCharge") == 0)
			st->field = BATCH_CHARGE;
		else if (strcmp(fname, "retryAfterMilliseconds") == 0)
			st->field = BATCH_RETRY;
		else
			st->field = BATCH_OTHER;
	}
	pfree(fname);
	return SEM_OK;
}

/* Store a field of a result; null leaves an optional field at its default */
static void
BatchStoreField(BatchParse *st, const char *token, JsonTokenType type)
{
	CosmosOpResult *r = BatchCurrent(st);
	double		d;

	if (r == NULL || st->field == BATCH_OTHER)
		return;
	if (type == JSON_TOKEN_NULL && st->field != BATCH_STATUS)
		return;
	switch (st->field)
	{
		case BATCH_STATUS:
			if (!JsonTokenInt(token, type, &r->status) || r->status < 0)
				SetParseError(&st->error, "batch response result %d: statusCode \"%s\" is not a status",
							  st->count, token);
			break;
		case BATCH_SUBSTATUS:
			if (!JsonTokenInt(token, type, &r->substatus))
				SetParseError(&st->error, "batch response result %d: subStatusCode \"%s\" is not an integer",
							  st->count, token);
			break;
		case BATCH_CHARGE:
			if (!JsonTokenDouble(token, type, &r->request_charge))
				SetParseError(&st->error, "batch response result %d: requestCharge \"%s\" is not a number",
							  st->count, token);
			break;
		case BATCH_RETRY:
			if (!JsonTokenDouble(token, type, &d))
				SetParseError(&st->error, "batch response result %d: retryAfterMilliseconds \"%s\" is not a number",
							  st->count, token);
			else
				r->retry_after_ms = d <= 0 ? 0 : d >= INT_MAX ? INT_MAX : (int) ceil(d);
			break;
		case BATCH_OTHER:
			break;
	}
}

/* A scalar: a field value of a result, or misplaced */
static SEM_ACTION
BatchScalar(void *state, char *token, JsonTokenType tokentype)
{
	BatchParse *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "batch response is not a JSON array");
	else if (st->depth == 1)
		SetParseError(&st->error, "batch response result %d is not an object", ++st->count);
	else if (st->depth == 2)
		BatchStoreField(st, token, tokentype);
	pfree(token);
	return SEM_OK;
}

/* Parse the per-operation results of a 200/207 batch or bulk response */
bool
CosmosParseBatchResponse(const char *body, size_t len, CosmosOpResult *results,
						 int nops, char **errmsg)
{
	BatchParse	st = {.results = results, .nops = nops};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = BatchObjectStart,
		.object_end = BatchObjectEnd,
		.array_start = BatchArrayStart,
		.array_end = BatchArrayEnd,
		.object_field_start = BatchFieldStart,
		.scalar = BatchScalar,
	};

	if (!ParseJson("batch response", body, len, &sem, errmsg))
		return false;
	if (st.error != NULL)
	{
		*errmsg = st.error;
		return false;
	}
	if (st.count != nops)
	{
		*errmsg = psprintf("batch response has %d results for %d operations", st.count, nops);
		return false;
	}
	for (int i = 0; i < nops; i++)
	{
		if (results[i].status < 0)
		{
			*errmsg = psprintf("batch response result %d has no statusCode", i + 1);
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------------------
 * Container resource: {"id":..,"partitionKey":{"paths":[..],"kind":..,"version":..},..}
 * ------------------------------------------------------------------------- */

typedef enum PkDefField
{
	PKDEF_OTHER,
	PKDEF_PATHS,
	PKDEF_KIND,
	PKDEF_VERSION
} PkDefField;

typedef struct ContainerParse
{
	int			depth;			/* 1 in the container, 2 in partitionKey, 3 in paths */
	bool		in_pk;			/* the current top-level field is "partitionKey" */
	bool		pk_seen;
	PkDefField	field;			/* current field of partitionKey */
	CosmosPartitionKeyDef *def;
	char	   *error;
} ContainerParse;

/* Whether the parse is directly inside partitionKey.paths */
static bool
ContainerInPaths(ContainerParse *st)
{
	return st->depth == 3 && st->in_pk && st->field == PKDEF_PATHS;
}

/* Names of the partitionKey fields read, for messages */
static const char *const PkDefFieldNames[] = {"", "paths", "kind", "version"};

/* Enter an object or array; check it where partitionKey wants something else */
static void
ContainerNested(ContainerParse *st, bool is_array)
{
	if (st->depth == 0 && is_array)
		SetParseError(&st->error, "container is not a JSON object");
	else if (st->depth == 1 && st->in_pk && is_array)
		SetParseError(&st->error, "container partitionKey is not an object");
	else if (st->depth == 1 && st->in_pk)
	{
		/* a repeated "partitionKey" replaces the earlier one */
		st->pk_seen = true;
		st->field = PKDEF_OTHER;
		memset(st->def, 0, sizeof(*st->def));
		st->def->version = 1;
	}
	else if (st->depth == 2 && st->in_pk && st->field != PKDEF_OTHER &&
			 !(is_array && st->field == PKDEF_PATHS))
		SetParseError(&st->error, "container partitionKey.%s has the wrong type",
					  PkDefFieldNames[st->field]);
	else if (ContainerInPaths(st))
		SetParseError(&st->error, "container partitionKey.paths holds a non-string");
	st->depth++;
}

/* Enter an object */
static SEM_ACTION
ContainerObjectStart(void *state)
{
	ContainerNested(state, false);
	return SEM_OK;
}

/* Enter an array */
static SEM_ACTION
ContainerArrayStart(void *state)
{
	ContainerNested(state, true);
	return SEM_OK;
}

/* Leave an object or array */
static SEM_ACTION
ContainerEnd(void *state)
{
	((ContainerParse *) state)->depth--;
	return SEM_OK;
}

/* Note the current field of the container and of its partitionKey */
static SEM_ACTION
ContainerFieldStart(void *state, char *fname, bool isnull)
{
	ContainerParse *st = state;

	if (st->depth == 1)
		st->in_pk = strcmp(fname, "partitionKey") == 0;
	else if (st->depth == 2 && st->in_pk)
	{
		if (strcmp(fname, "paths") == 0)
			st->field = PKDEF_PATHS;
		else if (strcmp(fname, "kind") == 0)
			st->field = PKDEF_KIND;
		else if (strcmp(fname, "version") == 0)
			st->field = PKDEF_VERSION;
		else
			st->field = PKDEF_OTHER;
	}
	pfree(fname);
	return SEM_OK;
}

/* Store a scalar field of partitionKey: kind or version */
static void
ContainerStoreField(ContainerParse *st, const char *token, JsonTokenType type)
{
	CosmosPartitionKeyDef *def = st->def;

	if (st->field == PKDEF_KIND)
	{
		if (type == JSON_TOKEN_STRING && strcmp(token, "Hash") == 0)
			def->multihash = false;
		else if (type == JSON_TOKEN_STRING && strcmp(token, "MultiHash") == 0)
			def->multihash = true;
		else
			SetParseError(&st->error, "container partition key kind \"%s\" is not supported (only Hash and MultiHash)",
						  token);
	}
	else if (st->field == PKDEF_VERSION && type != JSON_TOKEN_NULL)
	{
		if (!JsonTokenInt(token, type, &def->version) ||
			(def->version != 1 && def->version != 2))
			SetParseError(&st->error, "container partition key version \"%s\" is not supported (only 1 and 2)",
						  token);
	}
	else if (st->field == PKDEF_PATHS)
		SetParseError(&st->error, "container partitionKey.paths has the wrong type");
}

/* Append one of partitionKey.paths */
static void
ContainerAddPath(ContainerParse *st, const char *token, JsonTokenType type)
{
	CosmosPartitionKeyDef *def = st->def;

	if (type != JSON_TOKEN_STRING)
		SetParseError(&st->error, "container partitionKey.paths holds a non-string");
	else if (def->npaths >= COSMOS_MAX_PK_PATHS)
		SetParseError(&st->error, "container partition key has more than %d paths",
					  COSMOS_MAX_PK_PATHS);
	else if (strlen(token) >= sizeof(def->paths[0]))
		SetParseError(&st->error, "container partition key path is longer than %d bytes",
					  (int) sizeof(def->paths[0]) - 1);
	else
		strlcpy(def->paths[def->npaths++], token, sizeof(def->paths[0]));
}

/* A scalar: a path, kind or version; anything else is skipped */
static SEM_ACTION
ContainerScalar(void *state, char *token, JsonTokenType tokentype)
{
	ContainerParse *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "container is not a JSON object");
	else if (st->depth == 1 && st->in_pk)
		SetParseError(&st->error, "container partitionKey is not an object");
	else if (st->depth == 2 && st->in_pk)
		ContainerStoreField(st, token, tokentype);
	else if (ContainerInPaths(st))
		ContainerAddPath(st, token, tokentype);
	pfree(token);
	return SEM_OK;
}

/* Parse a container resource: partitionKey paths, kind (default Hash), version (default 1) */
bool
CosmosParseContainer(const char *body, size_t len, CosmosPartitionKeyDef *def,
					 char **errmsg)
{
	ContainerParse st = {.def = def};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = ContainerObjectStart,
		.object_end = ContainerEnd,
		.array_start = ContainerArrayStart,
		.array_end = ContainerEnd,
		.object_field_start = ContainerFieldStart,
		.scalar = ContainerScalar,
	};

	memset(def, 0, sizeof(*def));
	def->version = 1;
	if (!ParseJson("container", body, len, &sem, errmsg))
		return false;
	if (st.error == NULL && !st.pk_seen)
		st.error = pstrdup("container has no partitionKey (non-partitioned containers are not supported)");
	if (st.error == NULL && def->npaths == 0)
		st.error = pstrdup("container partition key has no paths");
	if (st.error == NULL && !def->multihash && def->npaths > 1)
		st.error = psprintf("container partition key of kind Hash has %d paths", def->npaths);
	if (st.error != NULL)
	{
		*errmsg = st.error;
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------------------
 * Partition key ranges: {"PartitionKeyRanges":[{"id":..,"minInclusive":..,
 * "maxExclusive":..,"parents":[..]},..],..}
 * ------------------------------------------------------------------------- */

typedef enum RangeField
{
	RANGE_OTHER,
	RANGE_ID,
	RANGE_MIN,
	RANGE_MAX,
	RANGE_PARENTS
} RangeField;

typedef struct PkRangesParse
{
	int			depth;			/* 2 in the range list, 3 in a range, 4 in parents */
	bool		in_list;		/* the current top-level field is "PartitionKeyRanges" */
	bool		list_seen;
	RangeField	field;			/* current field of the current range */
	CosmosPkRange *ranges;
	int			nranges;
	int			maxranges;
	char	  **parents;		/* every id named in a "parents" list */
	int			nparents;
	int			maxparents;
	char	   *error;
} PkRangesParse;

/* Whether the parse is directly inside a range object */
static bool
PkRangesInRange(PkRangesParse *st)
{
	return st->depth == 3 && st->in_list;
}

/* Whether the parse is directly inside a range's parents list */
static bool
PkRangesInParents(PkRangesParse *st)
{
	return st->depth == 4 && st->in_list && st->field == RANGE_PARENTS;
}

/* Enter an object: a range when in the list; misplaced where a scalar belongs */
static SEM_ACTION
PkRangesObjectStart(void *state)
{
	PkRangesParse *st = state;

	if (st->depth == 1 && st->in_list)
		SetParseError(&st->error, "PartitionKeyRanges is not an array");
	else if (st->depth == 2 && st->in_list)
	{
		if (st->nranges == st->maxranges)
		{
			st->maxranges = st->maxranges ? st->maxranges * 2 : 8;
			st->ranges = st->ranges ?
				repalloc(st->ranges, sizeof(CosmosPkRange) * st->maxranges) :
				palloc(sizeof(CosmosPkRange) * st->maxranges);
		}
		memset(&st->ranges[st->nranges++], 0, sizeof(CosmosPkRange));
		st->field = RANGE_OTHER;
	}
	else if ((PkRangesInRange(st) && st->field != RANGE_OTHER) || PkRangesInParents(st))
		SetParseError(&st->error, "partition key range %d has a misplaced object", st->nranges);
	st->depth++;
	return SEM_OK;
}

/* Leave an object or array */
static SEM_ACTION
PkRangesEnd(void *state)
{
	((PkRangesParse *) state)->depth--;
	return SEM_OK;
}

/* Enter an array: the range list, or a range's parents */
static SEM_ACTION
PkRangesArrayStart(void *state)
{
	PkRangesParse *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "partition key ranges are not a JSON object");
	else if (st->depth == 1 && st->in_list)
		st->list_seen = true;
	else if (st->depth == 2 && st->in_list)
		SetParseError(&st->error, "partition key range %d is not an object", st->nranges + 1);
	else if ((PkRangesInRange(st) && st->field != RANGE_OTHER && st->field != RANGE_PARENTS) ||
			 PkRangesInParents(st))
		SetParseError(&st->error, "partition key range %d has a misplaced array", st->nranges);
	st->depth++;
	return SEM_OK;
}

/* Note the current top-level field and the current field of a range */
static SEM_ACTION
PkRangesFieldStart(void *state, char *fname, bool isnull)
{
	PkRangesParse *st = state;

	if (st->depth == 1)
		st->in_list = strcmp(fname, "PartitionKeyRanges") == 0;
	else if (PkRangesInRange(st))
	{
		if (strcmp(fname, "id") == 0)
			st->field = RANGE_ID;
		else if (strcmp(fname, "minInclusive") == 0)
			st->field = RANGE_MIN;
		else if (strcmp(fname, "maxExclusive") == 0)
			st->field = RANGE_MAX;
		else if (strcmp(fname, "parents") == 0)
			st->field = RANGE_PARENTS;
		else
			st->field = RANGE_OTHER;
	}
	pfree(fname);
	return SEM_OK;
}

/* A range bound: hex digits, uppercased so byte-wise comparison orders them */
static char *
PkRangesBound(PkRangesParse *st, const char *token, JsonTokenType type)
{
	char	   *bound;

	if (type != JSON_TOKEN_STRING ||
		strspn(token, "0123456789ABCDEFabcdef") != strlen(token))
	{
		SetParseError(&st->error, "partition key range %d has a bound that is not hex: \"%s\"",
					  st->nranges, token);
		return NULL;
	}
	bound = pstrdup(token);
	for (char *p = bound; *p; p++)
		*p = pg_ascii_toupper((unsigned char) *p);
	return bound;
}

/* Remember an id named in a parents list (string, or number as the emulator sends) */
static void
PkRangesAddParent(PkRangesParse *st, const char *token, JsonTokenType type)
{
	if (type != JSON_TOKEN_STRING && type != JSON_TOKEN_NUMBER)
	{
		SetParseError(&st->error, "partition key range %d has a parent that is not an id",
					  st->nranges);
		return;
	}
	if (st->nparents == st->maxparents)
	{
		st->maxparents = st->maxparents ? st->maxparents * 2 : 8;
		st->parents = st->parents ?
			repalloc(st->parents, sizeof(char *) * st->maxparents) :
			palloc(sizeof(char *) * st->maxparents);
	}
	st->parents[st->nparents++] = pstrdup(token);
}

/* Store a scalar field of the current range */
static void
PkRangesStoreField(PkRangesParse *st, const char *token, JsonTokenType type)
{
	CosmosPkRange *r = &st->ranges[st->nranges - 1];

	switch (st->field)
	{
		case RANGE_ID:
			if ((type != JSON_TOKEN_STRING && type != JSON_TOKEN_NUMBER) ||
				token[0] == '\0' || strlen(token) >= sizeof(r->id))
				SetParseError(&st->error, "partition key range %d has an invalid id", st->nranges);
			else
				strlcpy(r->id, token, sizeof(r->id));
			break;
		case RANGE_MIN:
			if (r->min_inclusive == NULL)
				r->min_inclusive = PkRangesBound(st, token, type);
			break;
		case RANGE_MAX:
			if (r->max_exclusive == NULL)
				r->max_exclusive = PkRangesBound(st, token, type);
			break;
		case RANGE_PARENTS:
			if (type != JSON_TOKEN_NULL)
				SetParseError(&st->error, "partition key range %d: parents is not an array",
							  st->nranges);
			break;
		case RANGE_OTHER:
			break;
	}
}

/* A scalar: a field of a range or a parent id; anything else is skipped */
static SEM_ACTION
PkRangesScalar(void *state, char *token, JsonTokenType tokentype)
{
	PkRangesParse *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "partition key ranges are not a JSON object");
	else if (st->depth == 1 && st->in_list)
		SetParseError(&st->error, "PartitionKeyRanges is not an array");
	else if (st->depth == 2 && st->in_list)
		SetParseError(&st->error, "partition key range %d is not an object", st->nranges + 1);
	else if (PkRangesInRange(st) && st->nranges > 0)	/* else a misplaced array, reported */
		PkRangesStoreField(st, token, tokentype);
	else if (PkRangesInParents(st))
		PkRangesAddParent(st, token, tokentype);
	pfree(token);
	return SEM_OK;
}

/* qsort comparator of C strings */
static int
CompareCStrings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* qsort comparator of ranges by their lower bound */
static int
CompareRangeMin(const void *a, const void *b)
{
	return strcmp(((const CosmosPkRange *) a)->min_inclusive,
				  ((const CosmosPkRange *) b)->min_inclusive);
}

/* Check that every range has an id and both bounds */
static bool
PkRangesComplete(PkRangesParse *st)
{
	for (int i = 0; i < st->nranges; i++)
	{
		CosmosPkRange *r = &st->ranges[i];

		if (r->id[0] == '\0' || r->min_inclusive == NULL || r->max_exclusive == NULL)
		{
			st->error = psprintf("partition key range %d lacks %s", i + 1,
								 r->id[0] == '\0' ? "an id" :
								 r->min_inclusive == NULL ? "minInclusive" : "maxExclusive");
			return false;
		}
	}
	return true;
}

/* Drop the ranges a split replaced: those named as a parent */
static void
PkRangesDropParents(PkRangesParse *st)
{
	int			kept = 0;

	if (st->nparents == 0)
		return;
	qsort(st->parents, st->nparents, sizeof(char *), CompareCStrings);
	for (int i = 0; i < st->nranges; i++)
	{
		CosmosPkRange *r = &st->ranges[i];
		char	   *id = r->id;

		if (bsearch(&id, st->parents, st->nparents, sizeof(char *), CompareCStrings) != NULL)
		{
			pfree(r->min_inclusive);
			pfree(r->max_exclusive);
			continue;
		}
		st->ranges[kept++] = *r;
	}
	st->nranges = kept;
}

/* Check that the sorted ranges tile "" .. "FF" with no gap or overlap */
static bool
PkRangesCheckTiling(PkRangesParse *st)
{
	const char *expect = "";

	if (st->nranges == 0)
	{
		st->error = pstrdup("partition key ranges: none listed");
		return false;
	}
	for (int i = 0; i < st->nranges; i++)
	{
		CosmosPkRange *r = &st->ranges[i];
		int			cmp = strcmp(r->min_inclusive, expect);

		if (cmp != 0)
		{
			st->error = psprintf("partition key ranges have %s at \"%s\" (range %s starts at \"%s\")",
								 cmp > 0 ? "a gap" : "an overlap", expect, r->id,
								 r->min_inclusive);
			return false;
		}
		if (strcmp(r->min_inclusive, r->max_exclusive) >= 0)
		{
			st->error = psprintf("partition key range %s is empty: [\"%s\", \"%s\")",
								 r->id, r->min_inclusive, r->max_exclusive);
			return false;
		}
		expect = r->max_exclusive;
	}
	if (strcmp(expect, "FF") != 0)
	{
		st->error = psprintf("partition key ranges end at \"%s\", not \"FF\"", expect);
		return false;
	}
	return true;
}

/* Free what a failed pkranges parse allocated */
static void
PkRangesFree(PkRangesParse *st)
{
	for (int i = 0; i < st->nranges; i++)
	{
		if (st->ranges[i].min_inclusive)
			pfree(st->ranges[i].min_inclusive);
		if (st->ranges[i].max_exclusive)
			pfree(st->ranges[i].max_exclusive);
	}
	if (st->ranges)
		pfree(st->ranges);
}

/* Parse GET .../pkranges into the current ranges, sorted by lower bound */
bool
CosmosParsePkRanges(const char *body, size_t len, CosmosPkRange **ranges,
					int *nranges, char **errmsg)
{
	PkRangesParse st = {0};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = PkRangesObjectStart,
		.object_end = PkRangesEnd,
		.array_start = PkRangesArrayStart,
		.array_end = PkRangesEnd,
		.object_field_start = PkRangesFieldStart,
		.scalar = PkRangesScalar,
	};
	bool		ok;

	*ranges = NULL;
	*nranges = 0;
	ok = ParseJson("partition key ranges", body, len, &sem, errmsg);
	if (ok)
	{
		if (st.error == NULL && !st.list_seen)
			st.error = pstrdup("partition key ranges: no PartitionKeyRanges array");
		if (st.error == NULL && PkRangesComplete(&st))
		{
			PkRangesDropParents(&st);
			if (st.nranges > 1)
				qsort(st.ranges, st.nranges, sizeof(CosmosPkRange), CompareRangeMin);
			PkRangesCheckTiling(&st);
		}
		ok = st.error == NULL;
		if (!ok)
			*errmsg = st.error;
	}
	for (int i = 0; i < st.nparents; i++)
		pfree(st.parents[i]);
	if (st.parents)
		pfree(st.parents);
	if (!ok)
	{
		PkRangesFree(&st);
		return false;
	}
	*ranges = st.ranges;
	*nranges = st.nranges;
	return true;
}

/*
 * Index of the range with min <= epk < max (byte-wise), or -1. Ranges are
 * sorted and tile "" .. "FF"; "FF" is the maximum, so the last range also
 * takes any key at or past it.
 */
int
CosmosFindPkRange(const CosmosPkRange *ranges, int nranges, const char *epk)
{
	int			lo = 0;
	int			hi = nranges - 1;
	int			found = -1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (strcmp(ranges[mid].min_inclusive, epk) <= 0)
		{
			found = mid;
			lo = mid + 1;
		}
		else
			hi = mid - 1;
	}
	if (found < 0)
		return -1;
	if (strcmp(epk, ranges[found].max_exclusive) < 0 ||
		strcmp(ranges[found].max_exclusive, "FF") == 0)
		return found;
	return -1;
}

/* ---------------------------------------------------------------------------
 * Document listing (the sweep of recover()): the query body, and the page
 * {"Documents":[{"id":"..","k0":..,"k1":..},...],"_count":n} it answers
 * ------------------------------------------------------------------------- */

/*
 * Append the body of a query listing every document's id and partition key
 * values: SELECT c.id, c["col1"] AS k0, ... FROM c. Column names go in as
 * JSON string literals (valid Cosmos SQL string literals), so no name can
 * change the query.
 */
void
CosmosListQueryBody(StringInfo out, const char *const *pk_columns, int npk)
{
	StringInfoData query;

	initStringInfo(&query);
	appendStringInfoString(&query, "SELECT c.id");
	for (int i = 0; i < npk; i++)
	{
		appendStringInfoString(&query, ", c[");
		escape_json(&query, pk_columns[i]);
		appendStringInfo(&query, "] AS k%d", i);
	}
	appendStringInfoString(&query, " FROM c");
	appendStringInfoString(out, "{\"query\":");
	escape_json(out, query.data);
	appendStringInfoString(out, ",\"parameters\":[]}");
	pfree(query.data);
}

/* The field being read: a page field, a document field, or k<i> (i >= 0) */
#define LIST_FIELD_PAGE_OTHER	(-4)
#define LIST_FIELD_DOCUMENTS	(-3)
#define LIST_FIELD_OTHER		(-2)
#define LIST_FIELD_ID			(-1)

typedef struct ListParse
{
	int			depth;			/* 1 in the page object, 2 in Documents, 3 in a document */
	bool		in_documents;	/* the Documents array is open */
	bool		seen_documents;
	int			npk;
	int			field;			/* LIST_FIELD_*, or i for k<i> */
	CosmosListedDoc *docs;
	int			ndocs;
	int			capacity;
	int			max_docs;
	char	   *error;
} ListParse;

/* The document being read */
static CosmosListedDoc *
ListCurrent(ListParse *st)
{
	return &st->docs[st->ndocs - 1];
}

/* Mark the current document unusable (it is counted, never deleted) */
static void
ListReject(ListParse *st, const char *why)
{
	CosmosListedDoc *doc = ListCurrent(st);

	if (doc->problem == NULL)
		doc->problem = why;
}

/* Enter an object: the page, a document of Documents, or a nested value */
static SEM_ACTION
ListObjectStart(void *state)
{
	ListParse  *st = state;

	if (st->error != NULL)
		;						/* the page is refused already */
	else if (st->depth == 2 && st->in_documents)
	{
		if (st->ndocs >= st->max_docs)
			SetParseError(&st->error, "query page has more than %d documents", st->max_docs);
		else
		{
			if (st->ndocs == st->capacity)
			{
				st->capacity = Max(16, st->capacity * 2);
				st->docs = st->docs == NULL ? palloc0(sizeof(CosmosListedDoc) * st->capacity) :
					repalloc(st->docs, sizeof(CosmosListedDoc) * st->capacity);
			}
			st->ndocs++;
			memset(ListCurrent(st), 0, sizeof(CosmosListedDoc));
			ListCurrent(st)->values = palloc0(sizeof(char *) * st->npk);
			st->field = LIST_FIELD_OTHER;
		}
	}
	else if (st->depth == 3 && st->in_documents && st->field >= LIST_FIELD_ID)
		ListReject(st, "its id or partition key is not a JSON scalar");
	else if (st->depth == 1 && st->field == LIST_FIELD_DOCUMENTS)
		SetParseError(&st->error, "query page: Documents is not an array");
	st->depth++;
	return SEM_OK;
}

/* Leave an object */
static SEM_ACTION
ListObjectEnd(void *state)
{
	((ListParse *) state)->depth--;
	return SEM_OK;
}

/* Enter an array: Documents itself, or a nested value */
static SEM_ACTION
ListArrayStart(void *state)
{
	ListParse  *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "query page is not a JSON object");
	else if (st->depth == 1 && st->field == LIST_FIELD_DOCUMENTS)
	{
		st->in_documents = true;
		st->seen_documents = true;
	}
	else if (st->depth == 2 && st->in_documents)
		SetParseError(&st->error, "query page: a document is not an object");
	else if (st->depth == 3 && st->in_documents && st->field >= LIST_FIELD_ID && st->error == NULL)
		ListReject(st, "its id or partition key is not a JSON scalar");
	st->depth++;
	return SEM_OK;
}

/* Leave an array (Documents closes back at the page's depth) */
static SEM_ACTION
ListArrayEnd(void *state)
{
	ListParse  *st = state;

	st->depth--;
	if (st->depth == 1)
		st->in_documents = false;
	return SEM_OK;
}

/* Note which field comes next: Documents at the top, id or k<i> in a document */
static SEM_ACTION
ListFieldStart(void *state, char *fname, bool isnull)
{
	ListParse  *st = state;

	if (st->depth == 1)
		st->field = strcmp(fname, "Documents") == 0 ? LIST_FIELD_DOCUMENTS : LIST_FIELD_PAGE_OTHER;
	else if (st->depth == 3 && st->in_documents)
	{
		st->field = LIST_FIELD_OTHER;
		if (strcmp(fname, "id") == 0)
			st->field = LIST_FIELD_ID;
		else if (fname[0] == 'k' && fname[1] >= '0' && fname[1] < '0' + st->npk && fname[2] == '\0')
			st->field = fname[1] - '0';
	}
	pfree(fname);
	return SEM_OK;
}

/* Store the id (a string Cosmos DB would accept) or a key value (re-emitted as JSON) */
static void
ListStoreField(ListParse *st, const char *token, JsonTokenType type)
{
	CosmosListedDoc *doc = ListCurrent(st);
	size_t		len = strlen(token);
	StringInfoData value;

	if (st->field == LIST_FIELD_ID)
	{
		if (type != JSON_TOKEN_STRING)
			ListReject(st, "its id is not a string");
		else if (len == 0 || len > COSMOS_MAX_ID_BYTES)
			ListReject(st, "its id is empty or longer than 1023 bytes");
		else if (CosmosInvalidIdReason(token, (int) len) != NULL)
			ListReject(st, "its id has a character the worker never sends");
		else if (doc->id == NULL)
			doc->id = pstrdup(token);
		return;
	}
	if (len > COSMOS_MAX_PK_VALUE_BYTES)
	{
		ListReject(st, "a partition key value is longer than Cosmos DB allows");
		return;
	}
	if (doc->values[st->field] != NULL)
		return;					/* a repeated field: the first one counts, like the id */
	initStringInfo(&value);
	if (type == JSON_TOKEN_STRING)
		escape_json(&value, token);
	else
		appendStringInfoString(&value, token);	/* number, true, false, null: as the lexer read it */
	doc->values[st->field] = value.data;
}

/* A scalar: a field of a document, or part of something skipped */
static SEM_ACTION
ListScalar(void *state, char *token, JsonTokenType tokentype)
{
	ListParse  *st = state;

	if (st->depth == 0)
		SetParseError(&st->error, "query page is not a JSON object");
	else if (st->depth == 1 && st->field == LIST_FIELD_DOCUMENTS)
		SetParseError(&st->error, "query page: Documents is not an array");
	else if (st->depth == 2 && st->in_documents)
		SetParseError(&st->error, "query page: a document is not an object");
	else if (st->depth == 3 && st->in_documents && st->field >= LIST_FIELD_ID && st->error == NULL)
		ListStoreField(st, token, tokentype);
	pfree(token);
	return SEM_OK;
}

/* Finish each document: its key as a JSON array, or why it cannot be deleted */
static void
ListFinishDocs(ListParse *st)
{
	for (int i = 0; i < st->ndocs; i++)
	{
		CosmosListedDoc *doc = &st->docs[i];
		StringInfoData key;

		if (doc->id == NULL && doc->problem == NULL)
			doc->problem = "it has no id";
		initStringInfo(&key);
		appendStringInfoChar(&key, '[');
		for (int k = 0; k < st->npk; k++)
		{
			if (doc->values[k] == NULL)
			{
				/* undefined: a key no row writes, and no delete can name through the stream */
				if (doc->problem == NULL)
					doc->problem = "a partition key property is missing";
				break;
			}
			appendStringInfo(&key, "%s%s", k > 0 ? "," : "", doc->values[k]);
		}
		appendStringInfoChar(&key, ']');
		doc->pk_json = key.data;
	}
}

/*
 * Parse one page of a listing query. Documents that cannot be a row's (no
 * string id, an id Cosmos DB or the worker refuses, a key that is missing,
 * not a scalar or too long) come back with problem set; a malformed page, or
 * one with more than max_docs documents, fails as a whole. Result palloc'd.
 */
bool
CosmosParseListPage(const char *body, size_t len, int npk, int max_docs,
					CosmosListedDoc **docs, int *ndocs, char **errmsg)
{
	ListParse	st = {.npk = npk, .max_docs = max_docs, .field = LIST_FIELD_PAGE_OTHER};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = ListObjectStart,
		.object_end = ListObjectEnd,
		.array_start = ListArrayStart,
		.array_end = ListArrayEnd,
		.object_field_start = ListFieldStart,
		.scalar = ListScalar,
	};

	Assert(npk >= 1 && npk <= COSMOS_MAX_PK_PATHS);
	if (!ParseJson("query page", body, len, &sem, errmsg))
		return false;
	if (st.error == NULL && !st.seen_documents)
		st.error = pstrdup("query page has no Documents array");
	if (st.error != NULL)
	{
		*errmsg = st.error;
		return false;
	}
	ListFinishDocs(&st);
	*docs = st.docs;
	*ndocs = st.ndocs;
	return true;
}

/* ---------------------------------------------------------------------------
 * Error bodies: {"code":"BadRequest","message":"Message: ...\r\nActivityId: ..."}
 * ------------------------------------------------------------------------- */

typedef struct ErrorParse
{
	int			depth;
	char	  **target;			/* where the current top-level field's value goes */
	char	   *code;
	char	   *message;
} ErrorParse;

/* Enter an object or array */
static SEM_ACTION
ErrorStart(void *state)
{
	((ErrorParse *) state)->depth++;
	return SEM_OK;
}

/* Leave an object or array */
static SEM_ACTION
ErrorEnd(void *state)
{
	((ErrorParse *) state)->depth--;
	return SEM_OK;
}

/* Note whether the top-level field is "code" or "message" */
static SEM_ACTION
ErrorFieldStart(void *state, char *fname, bool isnull)
{
	ErrorParse *st = state;

	if (st->depth == 1)
		st->target = strcmp(fname, "code") == 0 ? &st->code :
			strcmp(fname, "message") == 0 ? &st->message : NULL;
	pfree(fname);
	return SEM_OK;
}

/* Keep the value of "code" or "message" */
static SEM_ACTION
ErrorScalar(void *state, char *token, JsonTokenType tokentype)
{
	ErrorParse *st = state;

	if (st->depth == 1 && st->target != NULL && tokentype != JSON_TOKEN_NULL &&
		*st->target == NULL)
		*st->target = token;
	else
		pfree(token);
	return SEM_OK;
}

/*
 * Append text as one log line of at most maxlen bytes, "..." marking a cut:
 * runs of control characters and whitespace become one space; non-ASCII is
 * kept if utf8 and valid UTF-8, else each character shows as "?".
 */
static void
AppendOneLine(StringInfo out, const char *s, size_t len, int maxlen, bool utf8)
{
	StringInfoData line;
	size_t		i = 0;
	bool		cut;

	initStringInfo(&line);
	while (i < len && line.len <= maxlen)
	{
		unsigned char c = (unsigned char) s[i];
		int			clen = 1;

		if (c <= ' ' || c == 0x7F)
		{
			if (line.len > 0 && line.data[line.len - 1] != ' ')
				appendStringInfoChar(&line, ' ');
		}
		else if (c < 0x80)
			appendStringInfoChar(&line, (char) c);
		else
		{
			const unsigned char *p = (const unsigned char *) s + i;
			bool		valid;

			clen = CompatUtf8CharLen(p);
			valid = clen <= len - i && pg_utf8_islegal(p, clen);
			if (!valid)
				clen = 1;
			if (valid && utf8)
				appendBinaryStringInfo(&line, s + i, clen);
			else
				appendStringInfoChar(&line, '?');
		}
		i += clen;
	}
	cut = line.len > maxlen;
	if (cut)
		line.len = pg_encoding_mbcliplen(PG_UTF8, line.data, line.len, maxlen - 3);
	while (line.len > 0 && line.data[line.len - 1] == ' ')
		line.len--;
	appendBinaryStringInfo(out, line.data, line.len);
	if (cut)
		appendStringInfoString(out, "...");
	pfree(line.data);
}

/* "code: message" of a Cosmos error body as one short line; raw printable text otherwise */
char *
CosmosErrorMessage(const char *body, size_t len)
{
	ErrorParse	st = {0};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = ErrorStart,
		.object_end = ErrorEnd,
		.array_start = ErrorStart,
		.array_end = ErrorEnd,
		.object_field_start = ErrorFieldStart,
		.scalar = ErrorScalar,
	};
	StringInfoData out;
	char	   *errmsg = NULL;

	initStringInfo(&out);
	if (ParseJson("error body", body, len, &sem, &errmsg) &&
		(st.code != NULL || st.message != NULL))
	{
		StringInfoData text;

		initStringInfo(&text);
		appendStringInfo(&text, "%s%s%s", st.code ? st.code : "",
						 st.code && st.message ? ": " : "", st.message ? st.message : "");
		AppendOneLine(&out, text.data, text.len, ERROR_MESSAGE_MAX,
					  GetDatabaseEncoding() == PG_UTF8);
		pfree(text.data);
	}
	else
		AppendOneLine(&out, body, Min(len, ERROR_RAW_MAX), ERROR_RAW_MAX, false);
	if (out.len == 0)
		appendStringInfoString(&out, "(empty response body)");
	if (st.code)
		pfree(st.code);
	if (st.message)
		pfree(st.message);
	if (errmsg)
		pfree(errmsg);
	return out.data;
}

/* ---------------------------------------------------------------------------
 * SQL-callable wrappers for the regression test (declared by the test itself,
 * not by the extension script)
 * ------------------------------------------------------------------------- */

/* A string field of a test op object; false when absent */
static bool
TestOpString(JsonbContainer *op, const char *key, const char **s, int *len)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(op, key, strlen(key), &v) == NULL)
		return false;
	if (v.type != jbvString)
		ereport(ERROR, (errmsg("op field \"%s\" must be a string", key)));
	*s = v.val.string.val;		/* not NUL-terminated: as the worker's are */
	*len = v.val.string.len;
	return true;
}

/* Fill a CosmosOp from {"op":"upsert"|"delete","id":..,"pk":..,"doc":..} */
static void
TestOpFromJsonb(JsonbValue *elem, CosmosOp *op)
{
	JsonbContainer *c;
	JsonbValue	doc;
	const char *kind;
	int			kind_len;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR, (errmsg("each op must be an object")));
	c = elem->val.binary.data;
	if (!TestOpString(c, "op", &kind, &kind_len) || !TestOpString(c, "pk", &op->pk_json, &op->pk_len))
		ereport(ERROR, (errmsg("each op needs \"op\" and \"pk\"")));
	if (kind_len == 6 && strncmp(kind, "delete", 6) == 0)
	{
		op->kind = COSMOS_OP_DELETE;
		if (!TestOpString(c, "id", &op->id, &op->id_len))
			ereport(ERROR, (errmsg("a delete op needs \"id\"")));
		return;
	}
	if (kind_len != 6 || strncmp(kind, "upsert", 6) != 0)
		ereport(ERROR, (errmsg("op must be \"upsert\" or \"delete\"")));
	op->kind = COSMOS_OP_UPSERT;
	if (getKeyJsonValueFromContainer(c, "doc", 3, &doc) == NULL)
		ereport(ERROR, (errmsg("an upsert op needs \"doc\"")));
	if (doc.type == jbvString)
	{
		/* a string doc is sent as written, to test "verbatim" */
		op->doc = doc.val.string.val;
		op->doc_len = doc.val.string.len;
	}
	else if (doc.type == jbvBinary)
	{
		op->doc = JsonbToCString(NULL, doc.val.binary.data, doc.val.binary.len);
		op->doc_len = strlen(op->doc);
	}
	else
		ereport(ERROR, (errmsg("\"doc\" must be an object, an array or a string")));
}

/* The ops of a test's jsonb array */
static CosmosOp *
TestOpsFromJsonb(Jsonb *ops_json, int *nops)
{
	CosmosOp   *ops;

	if (!JB_ROOT_IS_ARRAY(ops_json) || JB_ROOT_IS_SCALAR(ops_json))
		ereport(ERROR, (errmsg("ops must be a JSON array")));
	*nops = JB_ROOT_COUNT(ops_json);
	ops = palloc0(sizeof(CosmosOp) * Max(*nops, 1));
	for (int i = 0; i < *nops; i++)
		TestOpFromJsonb(getIthJsonbValueFromContainer(&ops_json->root, i), &ops[i]);
	return ops;
}

PG_FUNCTION_INFO_V1(cosmos_test_batch_body);

/* batch_body(jsonb ops) -> the request body of all the ops */
Datum
cosmos_test_batch_body(PG_FUNCTION_ARGS)
{
	int			nops;
	CosmosOp   *ops = TestOpsFromJsonb(PG_GETARG_JSONB_P(0), &nops);
	StringInfoData body;

	initStringInfo(&body);
	CosmosBodyStart(&body);
	for (int i = 0; i < nops; i++)
		(void) CosmosBodyAddOp(&body, &ops[i], INT_MAX);
	CosmosBodyFinish(&body);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(body.data, body.len));
}

PG_FUNCTION_INFO_V1(cosmos_test_batch_bodies);

/*
 * batch_bodies(jsonb ops, max_bytes) -> the bodies the ops are split into by
 * size, as the worker splits by cosmos_sink.batch_max_bytes, one per line
 * (a body never holds a raw newline)
 */
Datum
cosmos_test_batch_bodies(PG_FUNCTION_ARGS)
{
	int			nops;
	CosmosOp   *ops = TestOpsFromJsonb(PG_GETARG_JSONB_P(0), &nops);
	int			max_bytes = PG_GETARG_INT32(1);
	StringInfoData bodies;
	int			i = 0;

	initStringInfo(&bodies);
	while (i < nops)
	{
		StringInfoData body;

		initStringInfo(&body);
		CosmosBodyStart(&body);
		while (i < nops && CosmosBodyAddOp(&body, &ops[i], max_bytes))
			i++;
		CosmosBodyFinish(&body);
		if (bodies.len > 0)
			appendStringInfoChar(&bodies, '\n');
		appendBinaryStringInfo(&bodies, body.data, body.len);
		pfree(body.data);
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(bodies.data, bodies.len));
}

PG_FUNCTION_INFO_V1(cosmos_test_pk_header);

/* pk_header(text) -> the header value, or "error: ..." */
Datum
cosmos_test_pk_header(PG_FUNCTION_ARGS)
{
	text	   *pk = PG_GETARG_TEXT_PP(0);
	StringInfoData out;
	char	   *problem;

	initStringInfo(&out);
	appendStringInfoString(&out, "unchanged on error:");
	if (!AppendPkHeader(&out, VARDATA_ANY(pk), VARSIZE_ANY_EXHDR(pk), &problem))
	{
		if (strcmp(out.data, "unchanged on error:") != 0)
			ereport(ERROR, (errmsg("output buffer changed on error: %s", out.data)));
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("error: %s", problem)));
	}
	PG_RETURN_TEXT_P(cstring_to_text(out.data + strlen("unchanged on error:")));
}

PG_FUNCTION_INFO_V1(cosmos_test_url_encode);

/* url_encode(text) -> percent-encoded text */
Datum
cosmos_test_url_encode(PG_FUNCTION_ARGS)
{
	text	   *s = PG_GETARG_TEXT_PP(0);
	StringInfoData out;

	initStringInfo(&out);
	CosmosAppendUrlEncoded(&out, VARDATA_ANY(s), VARSIZE_ANY_EXHDR(s));
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

PG_FUNCTION_INFO_V1(cosmos_test_parse_batch);

/* parse_batch(body, nops) -> "status/substatus charge retry" per op, or "error: ..." */
Datum
cosmos_test_parse_batch(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	int			nops = PG_GETARG_INT32(1);
	CosmosOpResult *results;
	StringInfoData out;
	char	   *problem;

	if (nops < 0)
		ereport(ERROR, (errmsg("nops must not be negative")));
	results = palloc0(sizeof(CosmosOpResult) * Max(nops, 1));
	initStringInfo(&out);
	if (!CosmosParseBatchResponse(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), results,
								  nops, &problem))
		appendStringInfo(&out, "error: %s", problem);
	else
	{
		for (int i = 0; i < nops; i++)
			appendStringInfo(&out, "%s%d/%d %g %d", i > 0 ? "\n" : "", results[i].status,
							 results[i].substatus, results[i].request_charge,
							 results[i].retry_after_ms);
	}
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

PG_FUNCTION_INFO_V1(cosmos_test_parse_container);

/* parse_container(text) -> "paths=/a,/b kind=MultiHash version=2", or "error: ..." */
Datum
cosmos_test_parse_container(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	CosmosPartitionKeyDef def;
	StringInfoData out;
	char	   *problem;

	initStringInfo(&out);
	if (!CosmosParseContainer(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &def, &problem))
		appendStringInfo(&out, "error: %s", problem);
	else
	{
		appendStringInfoString(&out, "paths=");
		for (int i = 0; i < def.npaths; i++)
			appendStringInfo(&out, "%s%s", i > 0 ? "," : "", def.paths[i]);
		appendStringInfo(&out, " kind=%s version=%d",
						 def.multihash ? "MultiHash" : "Hash", def.version);
	}
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

PG_FUNCTION_INFO_V1(cosmos_test_parse_pkranges);

/* parse_pkranges(text) -> "id [min, max)" per range, or "error: ..." */
Datum
cosmos_test_parse_pkranges(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	CosmosPkRange *ranges;
	int			nranges;
	StringInfoData out;
	char	   *problem;

	initStringInfo(&out);
	if (!CosmosParsePkRanges(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &ranges,
							 &nranges, &problem))
		appendStringInfo(&out, "error: %s", problem);
	else
	{
		for (int i = 0; i < nranges; i++)
			appendStringInfo(&out, "%s%s [\"%s\", \"%s\")", i > 0 ? "\n" : "", ranges[i].id,
							 ranges[i].min_inclusive, ranges[i].max_exclusive);
	}
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

PG_FUNCTION_INFO_V1(cosmos_test_find_range);

/* find_range(pkranges, epk) -> id of the range holding epk, "none", or "error: ..." */
Datum
cosmos_test_find_range(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	char	   *epk = text_to_cstring(PG_GETARG_TEXT_PP(1));
	CosmosPkRange *ranges;
	int			nranges;
	int			idx;
	char	   *problem;

	if (!CosmosParsePkRanges(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &ranges,
							 &nranges, &problem))
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("error: %s", problem)));
	idx = CosmosFindPkRange(ranges, nranges, epk);
	PG_RETURN_TEXT_P(cstring_to_text(idx < 0 ? "none" : ranges[idx].id));
}

PG_FUNCTION_INFO_V1(cosmos_test_error_message);

/* error_message(text) -> the one-line message for logs */
Datum
cosmos_test_error_message(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(CosmosErrorMessage(VARDATA_ANY(body),
														VARSIZE_ANY_EXHDR(body))));
}

PG_FUNCTION_INFO_V1(cosmos_test_list_query);

/* list_query(columns text[]) -> the body of the sweep's listing query */
Datum
cosmos_test_list_query(PG_FUNCTION_ARGS)
{
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *values;
	bool	   *nulls;
	int			n;
	const char *columns[COSMOS_MAX_PK_PATHS];
	StringInfoData out;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &values, &nulls, &n);
	if (n < 1 || n > COSMOS_MAX_PK_PATHS)
		elog(ERROR, "1 to %d columns", COSMOS_MAX_PK_PATHS);
	for (int i = 0; i < n; i++)
		columns[i] = TextDatumGetCString(values[i]);
	initStringInfo(&out);
	CosmosListQueryBody(&out, columns, n);
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

PG_FUNCTION_INFO_V1(cosmos_test_parse_list);

/* parse_list(page, npk, max_docs) -> "id <key>" or "skipped: <why>" per document, or "error: ..." */
Datum
cosmos_test_parse_list(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	CosmosListedDoc *docs;
	int			ndocs;
	char	   *problem;
	StringInfoData out;

	if (PG_GETARG_INT32(1) < 1 || PG_GETARG_INT32(1) > COSMOS_MAX_PK_PATHS)
		elog(ERROR, "1 to %d partition key columns", COSMOS_MAX_PK_PATHS);
	initStringInfo(&out);
	if (!CosmosParseListPage(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), PG_GETARG_INT32(1),
							 PG_GETARG_INT32(2), &docs, &ndocs, &problem))
		appendStringInfo(&out, "error: %s", problem);
	else
	{
		appendStringInfo(&out, "%d documents", ndocs);
		for (int i = 0; i < ndocs; i++)
		{
			if (docs[i].problem != NULL)
				appendStringInfo(&out, "\nskipped: %s", docs[i].problem);
			else
				appendStringInfo(&out, "\n%s %s", docs[i].id, docs[i].pk_json);
		}
	}
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}
