/*
 * fuzz_response.c
 *		libFuzzer target for the Cosmos DB response parsers of
 *		src/cosmos_protocol.c: every input is fed, as a response body, to
 *		CosmosParseBatchResponse (several nops), CosmosParseContainer,
 *		CosmosParsePkRanges (+ CosmosFindPkRange), CosmosParseOffers,
 *		CosmosParseResourceIds, CosmosErrorMessage and, as
 *		a partition key, to CosmosAppendPartitionKeyHeader; once with a UTF8
 *		database and once with a LATIN1 one.
 *
 * Besides crashes, leaks and undefined behaviour (ASan/UBSan) and any
 * ereport(ERROR) (the shim aborts), each result is checked against what
 * cosmos.h promises; a broken promise aborts with "==FUZZ FINDING==".
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "cosmos.h"
#include "shim.h"

#define MAX_NOPS	4096		/* bigger result counts only cost time */

static const char *current_what;

/* A failed parse must leave a message, as a valid UTF-8 C string */
static void
CheckErrmsg(const char *errmsg)
{
	if (errmsg == NULL)
		shim_fail("%s failed without a message", current_what);
	if (!pg_verify_mbstr(PG_UTF8, errmsg, strlen(errmsg), true))
		shim_fail("%s failed with a message that is not valid UTF-8: %s", current_what, errmsg);
}

/* Top-level array elements of a body, to try the batch parser with the right nops */
typedef struct CountState
{
	int			depth;
	int			elements;
} CountState;

static CompatJsonSemResult
CountStart(void *state)
{
	((CountState *) state)->depth++;
	return COMPAT_JSON_SEM_RESULT(false);
}

static CompatJsonSemResult
CountEnd(void *state)
{
	((CountState *) state)->depth--;
	return COMPAT_JSON_SEM_RESULT(false);
}

static CompatJsonSemResult
CountElement(void *state, bool isnull)
{
	CountState *st = state;

	if (st->depth == 1)
		st->elements++;
	return COMPAT_JSON_SEM_RESULT(false);
}

static int
TopLevelElements(const uint8_t *data, size_t size)
{
	CountState	st = {0};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = CountStart,
		.object_end = CountEnd,
		.array_start = CountStart,
		.array_end = CountEnd,
		.array_element_start = CountElement,
	};
	JsonLexContext *lex = shim_make_lexer((char *) data, (int) size, PG_UTF8, false);

	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return -1;
	return st.elements;
}

/* Whether a text is valid JSON for the real parser */
static bool
IsValidJson(const char *s, int len)
{
	JsonLexContext *lex = shim_make_lexer((char *) s, len, PG_UTF8, false);

	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

static void
FuzzBatch(const uint8_t *data, size_t size)
{
	int			n = TopLevelElements(data, size);
	int			tries[6] = {0, 1, 2, n - 1, n, n + 1};

	current_what = "CosmosParseBatchResponse";
	for (int t = 0; t < lengthof(tries); t++)
	{
		int			nops = tries[t];
		CosmosOpResult *results;
		char	   *errmsg = NULL;
		bool		dup = false;

		for (int u = 0; u < t; u++)
			dup |= tries[u] == nops;
		if (nops < 0 || nops > MAX_NOPS || dup)
			continue;
		/* exactly nops results: ASan sees any write past them */
		results = malloc(sizeof(CosmosOpResult) * nops);
		memset(results, 0xBE, sizeof(CosmosOpResult) * nops);
		if (CosmosParseBatchResponse((const char *) data, size, results, nops, &errmsg))
		{
			for (int i = 0; i < nops; i++)
			{
				if (results[i].status < 0 || results[i].retry_after_ms < 0 ||
					!isfinite(results[i].request_charge))
					shim_fail("batch result %d of %d accepted with status %d, retry %d ms, charge %g",
							  i + 1, nops, results[i].status, results[i].retry_after_ms,
							  results[i].request_charge);
			}
			if (nops != n)
				shim_fail("batch response of %d elements accepted for %d operations", n, nops);
		}
		else
			CheckErrmsg(errmsg);
		free(results);
	}
}

static void
FuzzContainer(const uint8_t *data, size_t size)
{
	CosmosPartitionKeyDef def;
	char	   *errmsg = NULL;

	current_what = "CosmosParseContainer";
	memset(&def, 0xBE, sizeof(def));
	if (!CosmosParseContainer((const char *) data, size, &def, &errmsg))
	{
		CheckErrmsg(errmsg);
		return;
	}
	if (def.npaths < 1 || def.npaths > COSMOS_MAX_PK_PATHS)
		shim_fail("container accepted with %d paths", def.npaths);
	if (def.version != 1 && def.version != 2)
		shim_fail("container accepted with version %d", def.version);
	if (!def.multihash && def.npaths != 1)
		shim_fail("Hash container accepted with %d paths", def.npaths);
	for (int i = 0; i < def.npaths; i++)
		if (memchr(def.paths[i], '\0', sizeof(def.paths[i])) == NULL)
			shim_fail("container path %d is not NUL-terminated", i);
}

/* Where CosmosFindPkRange must put an effective partition key */
static void
CheckFind(const CosmosPkRange *ranges, int n, const char *epk, int expect)
{
	int			r = CosmosFindPkRange(ranges, n, epk);

	if (expect >= 0 && r != expect)
		shim_fail("CosmosFindPkRange(\"%s\") = %d, expected %d", epk, r, expect);
	if (r < 0 || r >= n)
		shim_fail("CosmosFindPkRange(\"%s\") = %d of %d tiling ranges", epk, r, n);
	if (strcmp(ranges[r].min_inclusive, epk) > 0 ||
		(strcmp(epk, ranges[r].max_exclusive) >= 0 && r != n - 1))
		shim_fail("CosmosFindPkRange(\"%s\") = range [\"%s\", \"%s\")", epk,
				  ranges[r].min_inclusive, ranges[r].max_exclusive);
}

static void
FuzzPkRanges(const uint8_t *data, size_t size)
{
	CosmosPkRange *ranges = (CosmosPkRange *) 1;
	int			n = -1;
	char	   *errmsg = NULL;
	char		epk[2 * COSMOS_EPK_HEX_LEN + 1];
	uint64		h = UINT64CONST(1469598103934665603);

	current_what = "CosmosParsePkRanges";
	if (!CosmosParsePkRanges((const char *) data, size, &ranges, &n, &errmsg))
	{
		CheckErrmsg(errmsg);
		if (ranges != NULL || n != 0)
			shim_fail("failed pkranges parse left %d ranges at %p", n, (void *) ranges);
		return;
	}
	if (n < 1 || ranges == NULL)
		shim_fail("pkranges accepted with %d ranges", n);
	if (strcmp(ranges[0].min_inclusive, "") != 0 || strcmp(ranges[n - 1].max_exclusive, "FF") != 0)
		shim_fail("pkranges accepted from \"%s\" to \"%s\"", ranges[0].min_inclusive,
				  ranges[n - 1].max_exclusive);
	for (int i = 0; i < n; i++)
	{
		if (ranges[i].id[0] == '\0' || memchr(ranges[i].id, '\0', sizeof(ranges[i].id)) == NULL)
			shim_fail("pkrange %d has no id or an unterminated one", i);
		if (strcmp(ranges[i].min_inclusive, ranges[i].max_exclusive) >= 0)
			shim_fail("pkrange %d is empty: [\"%s\", \"%s\")", i, ranges[i].min_inclusive,
					  ranges[i].max_exclusive);
		if (i > 0 && strcmp(ranges[i - 1].max_exclusive, ranges[i].min_inclusive) != 0)
			shim_fail("pkranges %d and %d do not meet", i - 1, i);
		CheckFind(ranges, n, ranges[i].min_inclusive, i);
	}
	CheckFind(ranges, n, "FF", n - 1);
	CheckFind(ranges, n, "FFFFFFFF", n - 1);
	/* and a key derived from the input */
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * UINT64CONST(1099511628211);
	for (int i = 0; i < (int) sizeof(epk) - 1; i++)
	{
		epk[i] = "0123456789ABCDEF"[h >> 60];
		h = h * UINT64CONST(6364136223846793005) + 1442695040888963407;
	}
	epk[sizeof(epk) - 1] = '\0';
	epk[(h >> 33) % (sizeof(epk) - 1)] = '\0';
	CheckFind(ranges, n, epk, -1);
}

/* Offers answer and container ids: a budget only from a sane figure of our own resources */
static void
FuzzOffers(const uint8_t *data, size_t size)
{
	CosmosOffer offer;
	char	   *coll_rid = NULL;
	char	   *db_rid = NULL;
	char	   *errmsg = NULL;

	current_what = "CosmosParseOffers";
	if (!CosmosParseOffers((const char *) data, size, "C", "D", &offer, &errmsg))
		CheckErrmsg(errmsg);
	else if (offer.level != COSMOS_OFFER_NONE &&
			 (!(offer.throughput > 0 && offer.throughput <= 1e9) ||
			  strcmp(offer.resource_id, offer.level == COSMOS_OFFER_CONTAINER ? "C" : "D") != 0))
		shim_fail("offer accepted: level %d, %g RU/s, resource \"%s\"", (int) offer.level,
				  offer.throughput, offer.resource_id);

	current_what = "CosmosParseResourceIds";
	errmsg = NULL;
	if (!CosmosParseResourceIds((const char *) data, size, &coll_rid, &db_rid, &errmsg))
		CheckErrmsg(errmsg);
	else if (coll_rid == NULL || db_rid == NULL || *coll_rid == '\0' || *db_rid == '\0' ||
			 strpbrk(coll_rid, "/\"\\ ") != NULL || strpbrk(db_rid, "/\"\\ ") != NULL)
		shim_fail("resource ids accepted: \"%s\", \"%s\"", coll_rid ? coll_rid : "(null)",
				  db_rid ? db_rid : "(null)");
}

static void
FuzzErrorMessage(const uint8_t *data, size_t size)
{
	char	   *msg = CosmosErrorMessage((const char *) data, size);
	size_t		len;

	if (msg == NULL)
		shim_fail("CosmosErrorMessage returned NULL");
	len = strlen(msg);
	if (len == 0 || len > 300)
		shim_fail("CosmosErrorMessage returned %zu bytes: %s", len, msg);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) msg[i];

		if (c < ' ' || c == 0x7F || (c >= 0x80 && GetDatabaseEncoding() != PG_UTF8))
			shim_fail("CosmosErrorMessage returned byte 0x%02x at %zu (database encoding %d): %s",
					  c, i, GetDatabaseEncoding(), msg);
	}
	if (!pg_verify_mbstr(PG_UTF8, msg, (int) len, true))
		shim_fail("CosmosErrorMessage returned invalid UTF-8: %s", msg);
}

static void
FuzzPkHeader(const uint8_t *data, size_t size)
{
	static const char prefix[] = "x-ms-documentdb-partitionkey: ";
	StringInfoData out;
	const char *value;
	int			vlen;

	initStringInfo(&out);
	appendStringInfoString(&out, prefix);
	if (!CosmosAppendPartitionKeyHeader(&out, (const char *) data, (int) size))
	{
		if (out.len != sizeof(prefix) - 1 || strcmp(out.data, prefix) != 0)
			shim_fail("CosmosAppendPartitionKeyHeader failed but changed the buffer: %s", out.data);
		return;
	}
	if (strncmp(out.data, prefix, sizeof(prefix) - 1) != 0)
		shim_fail("CosmosAppendPartitionKeyHeader changed what was in the buffer: %s", out.data);
	value = out.data + sizeof(prefix) - 1;
	vlen = out.len - (sizeof(prefix) - 1);
	if (vlen < 2 || value[0] != '[' || (int) strlen(value) != vlen)
		shim_fail("partition key header value is not a JSON array: %s", value);
	for (int i = 0; i < vlen; i++)
		if ((unsigned char) value[i] < ' ' || (unsigned char) value[i] >= 0x7F)
			shim_fail("partition key header value has byte 0x%02x at %d: %s",
					  (unsigned char) value[i], i, value);
	if (!IsValidJson(value, vlen))
		shim_fail("partition key header value is not valid JSON: %s", value);

	/* the value is compact 7-bit JSON: converting it again changes nothing */
	if (GetDatabaseEncoding() == PG_UTF8)
	{
		StringInfoData again;

		initStringInfo(&again);
		if (!CosmosAppendPartitionKeyHeader(&again, value, vlen))
			shim_fail("partition key header value refused when converted again: %s", value);
		if (again.len != vlen || memcmp(again.data, value, vlen) != 0)
			shim_fail("partition key header not idempotent:\n  once:  %s\n  twice: %s",
					  value, again.data);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int encodings[] = {PG_UTF8, PG_LATIN1};

	if (size > INT_MAX / 2)
		return 0;
	for (int e = 0; e < lengthof(encodings); e++)
	{
		shim_set_database_encoding(encodings[e]);
		FuzzBatch(data, size);
		FuzzContainer(data, size);
		FuzzPkRanges(data, size);
		FuzzOffers(data, size);
		FuzzErrorMessage(data, size);
		FuzzPkHeader(data, size);
		shim_reset();
	}
	return 0;
}
