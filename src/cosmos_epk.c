/*
 * cosmos_epk.c
 *		Effective partition keys, as Cosmos DB computes them to place a document
 *		in a physical partition key range: MurmurHash3 over a binary form of the
 *		partition key value (hash v2, MultiHash, and legacy hash v1).
 */
#include "postgres.h"

#include <math.h>

#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "compat.h"
#include "cosmos.h"

/* Component type bytes, shared by the hashed and the binary forms */
#define PK_UNDEFINED	0x00
#define PK_NULL			0x01
#define PK_FALSE		0x02
#define PK_TRUE			0x03
#define PK_NUMBER		0x05
#define PK_STRING		0x08

#define PK_MAX_COMPONENTS	16	/* a container has at most 3 paths; leave room */
#define V1_MAX_STRING_CHARS	100 /* v1 hashes strings cut to 100 UTF-16 units */
#define V1_MAX_STRING_BYTES	100 /* and encodes at most 101 of their bytes */

/* A JSON callback's result: failed once the parse state holds an error */
#define PK_CALLBACK CompatJsonSemResult
#define PK_RETURN(st) return COMPAT_JSON_SEM_RESULT((st)->error != NULL)

PG_FUNCTION_INFO_V1(cosmos_test_epk);
PG_FUNCTION_INFO_V1(cosmos_test_murmur);

/* One component of a partition key value; strings are UTF-8 */
typedef struct PkComponent
{
	uint8		type;
	double		number;
	const char *str;
	int			len;
} PkComponent;

/* State of the JSON parse of a partition key array */
typedef struct PkParse
{
	int			level;			/* 0 outside, 1 in the array, 2 inside an {} */
	int			ncomps;
	PkComponent comps[PK_MAX_COMPONENTS];
	const char *error;			/* first problem found, or NULL */
} PkParse;

/* ---------------------------------------------------------------------------
 * MurmurHash3 (Austin Appleby, public domain), byte order independent
 * ------------------------------------------------------------------------- */

/* Rotate a 32-bit value left */
static inline uint32
Rotl32(uint32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* Rotate a 64-bit value left */
static inline uint64
Rotl64(uint64 x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* Read a little-endian 32-bit block, as the reference does on x86 */
static inline uint32
Le32(const uint8 *p)
{
	return (uint32) p[0] | ((uint32) p[1] << 8) | ((uint32) p[2] << 16) | ((uint32) p[3] << 24);
}

/* Read a little-endian 64-bit block */
static inline uint64
Le64(const uint8 *p)
{
	return (uint64) Le32(p) | ((uint64) Le32(p + 4) << 32);
}

/* Final avalanche of the 32-bit hash */
static inline uint32
Fmix32(uint32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* Final avalanche of one half of the 128-bit hash */
static inline uint64
Fmix64(uint64 k)
{
	k ^= k >> 33;
	k *= UINT64CONST(0xff51afd7ed558ccd);
	k ^= k >> 33;
	k *= UINT64CONST(0xc4ceb9fe1a85ec53);
	k ^= k >> 33;
	return k;
}

/* MurmurHash3_x86_32: the hash of partition key definition version 1 */
uint32
CosmosMurmur3_32(const void *data, size_t len, uint32 seed)
{
	const uint8 *bytes = data;
	const uint32 c1 = 0xcc9e2d51;
	const uint32 c2 = 0x1b873593;
	size_t		nblocks = len / 4;
	uint32		h = seed;
	uint32		k;
	size_t		i;

	for (i = 0; i < nblocks; i++)
	{
		k = Le32(bytes + i * 4);
		k *= c1;
		k = Rotl32(k, 15);
		k *= c2;
		h ^= k;
		h = Rotl32(h, 13);
		h = h * 5 + 0xe6546b64;
	}
	k = 0;
	for (i = len & 3; i > 0; i--)
		k ^= (uint32) bytes[nblocks * 4 + i - 1] << (8 * (i - 1));
	if (len & 3)
	{
		k *= c1;
		k = Rotl32(k, 15);
		k *= c2;
		h ^= k;
	}
	h ^= (uint32) len;
	return Fmix32(h);
}

/* MurmurHash3_x64_128: the hash of version 2 and MultiHash keys */
void
CosmosMurmur3_128(const void *data, size_t len, uint64 seed, uint64 *out1, uint64 *out2)
{
	const uint8 *bytes = data;
	const uint64 c1 = UINT64CONST(0x87c37b91114253d5);
	const uint64 c2 = UINT64CONST(0x4cf5ad432745937f);
	size_t		nblocks = len / 16;
	const uint8 *tail = bytes + nblocks * 16;
	uint64		h1 = seed;
	uint64		h2 = seed;
	uint64		k1;
	uint64		k2;
	size_t		i;

	for (i = 0; i < nblocks; i++)
	{
		k1 = Le64(bytes + i * 16);
		k2 = Le64(bytes + i * 16 + 8);

		k1 *= c1;
		k1 = Rotl64(k1, 31);
		k1 *= c2;
		h1 ^= k1;
		h1 = Rotl64(h1, 27);
		h1 += h2;
		h1 = h1 * 5 + 0x52dce729;

		k2 *= c2;
		k2 = Rotl64(k2, 33);
		k2 *= c1;
		h2 ^= k2;
		h2 = Rotl64(h2, 31);
		h2 += h1;
		h2 = h2 * 5 + 0x38495ab5;
	}

	k1 = 0;
	k2 = 0;
	for (i = len & 15; i > 8; i--)
		k2 ^= (uint64) tail[i - 1] << (8 * (i - 9));
	if ((len & 15) > 8)
	{
		k2 *= c2;
		k2 = Rotl64(k2, 33);
		k2 *= c1;
		h2 ^= k2;
	}
	for (i = Min(len & 15, 8); i > 0; i--)
		k1 ^= (uint64) tail[i - 1] << (8 * (i - 1));
	if (len & 15)
	{
		k1 *= c1;
		k1 = Rotl64(k1, 31);
		k1 *= c2;
		h1 ^= k1;
	}

	h1 ^= (uint64) len;
	h2 ^= (uint64) len;
	h1 += h2;
	h2 += h1;
	h1 = Fmix64(h1);
	h2 = Fmix64(h2);
	h1 += h2;
	h2 += h1;
	*out1 = h1;
	*out2 = h2;
}

/* ---------------------------------------------------------------------------
 * Parsing the partition key value (a JSON array) with PostgreSQL's parser
 * ------------------------------------------------------------------------- */

/* Record the first problem of the parse; later events are ignored */
static void
PkFail(PkParse *st, const char *error)
{
	if (st->error == NULL)
		st->error = error;
}

/* Room for one more component, or a recorded error */
static PkComponent *
PkNewComponent(PkParse *st, uint8 type)
{
	PkComponent *c;

	if (st->ncomps >= PK_MAX_COMPONENTS)
	{
		PkFail(st, "partition key value has too many components");
		return NULL;
	}
	c = &st->comps[st->ncomps++];
	memset(c, 0, sizeof(*c));
	c->type = type;
	return c;
}

/* '[': only the outermost array is allowed */
static PK_CALLBACK
PkArrayStart(void *state)
{
	PkParse    *st = state;

	if (st->level == 0)
		st->level = 1;
	else
		PkFail(st, "partition key components cannot be arrays");
	PK_RETURN(st);
}

/* ']' */
static PK_CALLBACK
PkArrayEnd(void *state)
{
	PkParse    *st = state;

	if (st->level == 1)
		st->level = 0;
	PK_RETURN(st);
}

/* '{': an empty object stands for undefined (a document without the path) */
static PK_CALLBACK
PkObjectStart(void *state)
{
	PkParse    *st = state;

	if (st->level == 1)
		st->level = 2;
	else if (st->level == 0)
		PkFail(st, "partition key value must be a JSON array");
	PK_RETURN(st);
}

/* A field inside '{...}': only {} is a component */
static PK_CALLBACK
PkObjectField(void *state, char *fname, bool isnull)
{
	PkParse    *st = state;

	PkFail(st, "partition key components cannot be objects ({} alone means undefined)");
	PK_RETURN(st);
}

/* '}' ends an undefined component */
static PK_CALLBACK
PkObjectEnd(void *state)
{
	PkParse    *st = state;

	if (st->level == 2)
	{
		st->level = 1;
		PkNewComponent(st, PK_UNDEFINED);
	}
	PK_RETURN(st);
}

/* A scalar element: string (to UTF-8), number (as a double), true, false, null */
static PK_CALLBACK
PkScalar(void *state, char *token, JsonTokenType tokentype)
{
	PkParse    *st = state;
	PkComponent *c;

	if (st->level != 1)
	{
		PkFail(st, "partition key value must be a JSON array");
		PK_RETURN(st);
	}
	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			if ((c = PkNewComponent(st, PK_STRING)) != NULL)
			{
				c->str = pg_server_to_any(token, strlen(token), PG_UTF8);
				c->len = strlen(c->str);
			}
			break;
		case JSON_TOKEN_NUMBER:
			if ((c = PkNewComponent(st, PK_NUMBER)) != NULL)
			{
				c->number = strtod(token, NULL);
				if (isinf(c->number))
					PkFail(st, "partition key number is out of range for a double");
			}
			break;
		case JSON_TOKEN_TRUE:
			PkNewComponent(st, PK_TRUE);
			break;
		case JSON_TOKEN_FALSE:
			PkNewComponent(st, PK_FALSE);
			break;
		case JSON_TOKEN_NULL:
			PkNewComponent(st, PK_NULL);
			break;
		default:
			PkFail(st, "unexpected JSON token in the partition key value");
			break;
	}
	PK_RETURN(st);
}

/* Parse a partition key JSON array into its components */
static bool
ParsePartitionKey(const char *pk_json, int pk_len, PkParse *st, char **errmsg)
{
	JsonSemAction sem;
	JsonLexContext *lex;
	JsonParseErrorType result;

	memset(st, 0, sizeof(*st));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = st;
	sem.array_start = PkArrayStart;
	sem.array_end = PkArrayEnd;
	sem.object_start = PkObjectStart;
	sem.object_end = PkObjectEnd;
	sem.object_field_start = PkObjectField;
	sem.scalar = PkScalar;

	lex = CompatMakeJsonLexer(pk_json, pk_len, GetDatabaseEncoding());
	result = pg_parse_json(lex, &sem);
	if (st->error == NULL && result != JSON_SUCCESS)
		*errmsg = psprintf("partition key value is not valid JSON: %s",
						   json_errdetail(result, lex));
	else if (st->error != NULL)
		*errmsg = pstrdup(st->error);
	CompatFreeJsonLexer(lex);
	return st->error == NULL && result == JSON_SUCCESS;
}

/* ---------------------------------------------------------------------------
 * Hash version 2 and MultiHash
 * ------------------------------------------------------------------------- */

/* Append the 8 bytes of a double, little-endian */
static void
AppendDoubleLE(StringInfo buf, double d)
{
	uint64		bits;
	char		bytes[8];
	int			i;

	memcpy(&bits, &d, sizeof(bits));
	for (i = 0; i < 8; i++)
		bytes[i] = (char) ((bits >> (8 * i)) & 0xFF);
	appendBinaryStringInfo(buf, bytes, 8);
}

/* Append one component as hash v2 reads it: strings end in 0xFF, uncut */
static void
AppendV2Component(StringInfo buf, const PkComponent *c)
{
	appendStringInfoChar(buf, (char) c->type);
	if (c->type == PK_STRING)
	{
		appendBinaryStringInfo(buf, c->str, c->len);
		appendStringInfoChar(buf, (char) 0xFF);
	}
	else if (c->type == PK_NUMBER)
		AppendDoubleLE(buf, c->number);
}

/* 32 hex chars of the v2 hash of buf: reversed 128-bit hash, top 2 bits clear */
static void
V2HashHex(const StringInfo buf, char *out)
{
	uint64		h1;
	uint64		h2;

	CosmosMurmur3_128(buf->data, buf->len, 0, &h1, &h2);
	snprintf(out, COSMOS_EPK_HEX_LEN + 1, "%016llX%016llX",
			 (unsigned long long) (h2 & UINT64CONST(0x3FFFFFFFFFFFFFFF)),
			 (unsigned long long) h1);
}

/* EPK of kind Hash v2 (one hash over all components) or MultiHash (one each) */
static bool
V2Epk(const PkParse *st, bool multihash, char *out, size_t outlen, char **errmsg)
{
	StringInfoData buf;
	int			nhashes = multihash ? st->ncomps : 1;
	int			i;

	if (outlen < (size_t) nhashes * COSMOS_EPK_HEX_LEN + 1)
	{
		*errmsg = pstrdup("effective partition key does not fit the output buffer");
		return false;
	}
	initStringInfo(&buf);
	for (i = 0; i < st->ncomps; i++)
	{
		AppendV2Component(&buf, &st->comps[i]);
		if (multihash)
		{
			V2HashHex(&buf, out + i * COSMOS_EPK_HEX_LEN);
			resetStringInfo(&buf);
		}
	}
	if (!multihash)
		V2HashHex(&buf, out);
	pfree(buf.data);
	return true;
}

/* ---------------------------------------------------------------------------
 * Hash version 1 (legacy containers)
 * ------------------------------------------------------------------------- */

/*
 * Cut a UTF-8 string to 100 UTF-16 units, as the SDKs' Substring(0, 100) does;
 * a surrogate pair cut in half leaves a lone surrogate that .NET encodes as
 * U+FFFD, which is done here too.
 */
static void
V1Truncate(PkComponent *c)
{
	int			units = 0;
	int			pos = 0;

	while (pos < c->len)
	{
		int			clen = CompatUtf8CharLen((const unsigned char *) c->str + pos);
		int			cunits = clen == 4 ? 2 : 1;

		if (units + cunits > V1_MAX_STRING_CHARS)
		{
			if (units < V1_MAX_STRING_CHARS)
			{
				char	   *cut = palloc(pos + 4);

				memcpy(cut, c->str, pos);
				memcpy(cut + pos, "\xEF\xBF\xBD", 4);
				c->str = cut;
				c->len = pos + 3;
			}
			else
				c->len = pos;
			return;
		}
		units += cunits;
		pos += clen;
	}
}

/* Append one component as hash v1 reads it: strings end in 0x00 */
static void
AppendV1HashComponent(StringInfo buf, const PkComponent *c)
{
	appendStringInfoChar(buf, (char) c->type);
	if (c->type == PK_STRING)
	{
		appendBinaryStringInfo(buf, c->str, c->len);
		appendStringInfoChar(buf, '\0');
	}
	else if (c->type == PK_NUMBER)
		AppendDoubleLE(buf, c->number);
}

/* Append a number in the order-preserving binary encoding (7 bits per byte) */
static void
AppendV1Number(StringInfo buf, double d)
{
	uint64		u;
	uint8		b = 0;
	bool		first = true;

	memcpy(&u, &d, sizeof(u));
	if (u < (UINT64CONST(1) << 63))
		u ^= UINT64CONST(1) << 63;
	else
		u = ~u + 1;
	appendStringInfoChar(buf, PK_NUMBER);
	appendStringInfoChar(buf, (char) (u >> 56));
	u <<= 8;
	do
	{
		if (!first)
			appendStringInfoChar(buf, (char) b);
		first = false;
		b = (uint8) ((u >> 56) | 0x01);
		u <<= 7;
	} while (u != 0);
	appendStringInfoChar(buf, (char) (b & 0xFE));
}

/* Append one component in the v1 binary encoding that forms the EPK */
static void
AppendV1Binary(StringInfo buf, const PkComponent *c)
{
	if (c->type == PK_NUMBER)
		AppendV1Number(buf, c->number);
	else if (c->type == PK_STRING)
	{
		bool		short_string = c->len <= V1_MAX_STRING_BYTES;
		int			n = short_string ? c->len : V1_MAX_STRING_BYTES + 1;
		int			i;

		appendStringInfoChar(buf, PK_STRING);
		for (i = 0; i < n; i++)
		{
			uint8		byte = (uint8) c->str[i];

			appendStringInfoChar(buf, (char) (byte < 0xFF ? byte + 1 : byte));
		}
		if (short_string)
			appendStringInfoChar(buf, '\0');
	}
	else
		appendStringInfoChar(buf, (char) c->type);
}

/* EPK of kind Hash v1: encode(number(murmur32 of the cut components)) || encode(components) */
static bool
V1Epk(PkParse *st, char *out, size_t outlen, char **errmsg)
{
	static const char hex[] = "0123456789ABCDEF";
	StringInfoData buf;
	uint32		h;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < st->ncomps; i++)
	{
		if (st->comps[i].type == PK_STRING)
			V1Truncate(&st->comps[i]);
		AppendV1HashComponent(&buf, &st->comps[i]);
	}
	h = CosmosMurmur3_32(buf.data, buf.len, 0);

	resetStringInfo(&buf);
	AppendV1Number(&buf, (double) h);
	for (i = 0; i < st->ncomps; i++)
		AppendV1Binary(&buf, &st->comps[i]);
	if (outlen < (size_t) buf.len * 2 + 1)
	{
		*errmsg = psprintf("effective partition key needs %d bytes, the output buffer has %zu",
						   buf.len * 2 + 1, outlen);
		pfree(buf.data);
		return false;
	}
	for (i = 0; i < buf.len; i++)
	{
		out[2 * i] = hex[((uint8) buf.data[i]) >> 4];
		out[2 * i + 1] = hex[((uint8) buf.data[i]) & 0xF];
	}
	out[2 * buf.len] = '\0';
	pfree(buf.data);
	return true;
}

/*
 * Whether a partition key value is a JSON array of npk scalars (strings,
 * numbers, booleans, null), as the plugin writes them; else why not.
 */
bool
CosmosPartitionKeyValid(const char *pk_json, int pk_len, int npk, char **errmsg)
{
	PkParse		st;

	if (!ParsePartitionKey(pk_json, pk_len, &st, errmsg))
		return false;
	if (st.ncomps != npk)
	{
		*errmsg = psprintf("partition key value has %d components, the route has %d",
						   st.ncomps, npk);
		return false;
	}
	return true;
}

/*
 * Effective partition key of a partition key value (a JSON array text) under
 * a container's partition key definition, as uppercase hex; [] gives "".
 */
bool
CosmosEffectivePartitionKey(const CosmosPartitionKeyDef *def, const char *pk_json,
							int pk_len, char *out, size_t outlen, char **errmsg)
{
	PkParse		st;

	if (!ParsePartitionKey(pk_json, pk_len, &st, errmsg))
		return false;
	if (outlen < 1)
	{
		*errmsg = pstrdup("effective partition key does not fit the output buffer");
		return false;
	}
	out[0] = '\0';
	if (st.ncomps == 0)
		return true;
	if (def->multihash)
		return V2Epk(&st, true, out, outlen, errmsg);
	if (def->version == 1)
		return V1Epk(&st, out, outlen, errmsg);
	if (def->version == 2)
		return V2Epk(&st, false, out, outlen, errmsg);
	*errmsg = psprintf("unsupported partition key definition version %d", def->version);
	return false;
}

/* ---------------------------------------------------------------------------
 * SQL-callable wrappers for the regression tests (declared by the test only)
 * ------------------------------------------------------------------------- */

/* cosmos_test_epk(pk_json, kind 'Hash' or 'MultiHash', version): EPK in hex */
Datum
cosmos_test_epk(PG_FUNCTION_ARGS)
{
	text	   *pk = PG_GETARG_TEXT_PP(0);
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	CosmosPartitionKeyDef def;
	size_t		outlen = 8192;
	char	   *out = palloc(outlen);
	char	   *problem = NULL;

	memset(&def, 0, sizeof(def));
	if (pg_strcasecmp(kind, "MultiHash") == 0)
		def.multihash = true;
	else if (pg_strcasecmp(kind, "Hash") != 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("partition key kind must be Hash or MultiHash")));
	def.version = PG_GETARG_INT32(2);
	if (!CosmosEffectivePartitionKey(&def, VARDATA_ANY(pk), VARSIZE_ANY_EXHDR(pk), out,
									 outlen, &problem))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", problem)));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* cosmos_test_murmur(text): x64_128 h1 and h2, and x86_32, all seed 0, in hex */
Datum
cosmos_test_murmur(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	uint64		h1;
	uint64		h2;
	uint32		h;

	CosmosMurmur3_128(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 0, &h1, &h2);
	h = CosmosMurmur3_32(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 0);
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("x64_128 h1 %016llx h2 %016llx, x86_32 %08x",
											  (unsigned long long) h1,
											  (unsigned long long) h2, h)));
}
