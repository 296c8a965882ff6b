/*
 * cosmos.h
 *		The Cosmos DB for NoSQL client (gateway REST API): credentials and
 *		request signing, partition-key hashing and range routing, request bodies,
 *		response parsing, and the classification of every outcome.
 *
 * Nothing declared here calls ereport(ERROR) on bad input from the network or
 * from files: functions return false and a palloc'd message instead, so the
 * worker can record the problem and keep running.
 */
#ifndef COSMOS_SINK_COSMOS_H
#define COSMOS_SINK_COSMOS_H

#include "postgres.h"

#include <time.h>

#include "lib/stringinfo.h"

#define COSMOS_API_VERSION		"2020-07-15"
#define COSMOS_MAX_KEY_BYTES	128
#define COSMOS_MAX_PK_PATHS		3
#define COSMOS_EPK_HEX_LEN		32	/* one hashed component, in hex */
#define COSMOS_MAX_ID_BYTES		1023
#define COSMOS_MAX_DOC_BYTES	(2 * 1024 * 1024)
#define COSMOS_MAX_PK_VALUE_BYTES 2048	/* one partition key value (service limit) */
#define COSMOS_DATE_LEN			30	/* "Thu, 27 Apr 2017 00:51:12 GMT" + NUL */

/* ---------------------------------------------------------------------------
 * cosmos_auth.c: credentials and signing
 * ------------------------------------------------------------------------- */

typedef enum CosmosAuthKind
{
	COSMOS_AUTH_NONE,
	COSMOS_AUTH_MASTER_KEY,
	COSMOS_AUTH_AAD_TOKEN
} CosmosAuthKind;

typedef struct CosmosCredentials
{
	CosmosAuthKind kind;
	unsigned char key[COSMOS_MAX_KEY_BYTES];	/* decoded master key */
	int			key_len;
	char	   *aad_token;		/* malloc'd JWT, for COSMOS_AUTH_AAD_TOKEN */
	char	   *endpoint;		/* malloc'd AccountEndpoint from a connection string, or NULL */
	char	   *source_file;	/* malloc'd path the credentials came from */
	time_t		source_mtime;	/* to notice a rewritten token file */
	off_t		source_size;	/* same, for a rewrite within the same second */
	long		source_mtime_nsec;	/* same, at the file system's resolution */
	ino_t		source_ino;		/* a new file renamed over the old one */
} CosmosCredentials;

/* Parse the text of a key file: a bare base64 key or a connection string */
extern bool CosmosParseKeyText(const char *text, CosmosCredentials *creds, char **errmsg);

/*
 * Load credentials from cosmos_sink.key_file or cosmos_sink.aad_token_file
 * (exactly one may be set). A key file readable by group or others is refused.
 * Error messages name the file and the fix, never its contents.
 */
extern bool CosmosLoadCredentials(const char *key_file, const char *aad_token_file,
								  CosmosCredentials *creds, char **errmsg);

/* Whether an AAD token file changed since it was loaded (so it must be re-read) */
extern bool CosmosCredentialsStale(const CosmosCredentials *creds);

/* Free what CosmosLoadCredentials/CosmosParseKeyText allocated; zero the key */
extern void CosmosFreeCredentials(CosmosCredentials *creds);

/* RFC 1123 date for x-ms-date, C-locale independent: "Thu, 27 Apr 2017 00:51:12 GMT" */
extern void CosmosFormatDate(time_t when, char out[COSMOS_DATE_LEN]);

/*
 * Append the URL-encoded Authorization header value for one request:
 * master key -> type=master&ver=1.0&sig=base64(HMAC-SHA256(key, payload)),
 * AAD -> type=aad&ver=1.0&sig=<token>. verb/resource_type are lowercased for
 * signing; resource_link is used as given (name-based, no leading slash).
 */
extern bool CosmosSignRequest(const CosmosCredentials *creds, const char *verb,
							  const char *resource_type, const char *resource_link,
							  const char *date, StringInfo out);

/* ---------------------------------------------------------------------------
 * cosmos_epk.c: effective partition keys
 * ------------------------------------------------------------------------- */

/* A container's partitionKey definition (GET /dbs/{db}/colls/{coll}) */
typedef struct CosmosPartitionKeyDef
{
	int			npaths;
	char		paths[COSMOS_MAX_PK_PATHS][NAMEDATALEN + 2];	/* "/column" */
	bool		multihash;		/* kind MultiHash (hierarchical) */
	int			version;		/* 1 or 2 */
} CosmosPartitionKeyDef;

/*
 * Effective partition key of a partition key value given as a JSON array text
 * (["a",5,true,null], {} for undefined), as uppercase hex into out (size at
 * least COSMOS_EPK_HEX_LEN * COSMOS_MAX_PK_PATHS + 1 for v2/MultiHash; v1
 * keys can be longer: pass outlen).
 */
extern bool CosmosEffectivePartitionKey(const CosmosPartitionKeyDef *def,
										const char *pk_json, int pk_len,
										char *out, size_t outlen, char **errmsg);

/* MurmurHash3 (Appleby, seed given) exposed for self-tests */
extern void CosmosMurmur3_128(const void *data, size_t len, uint64 seed,
							  uint64 *h1, uint64 *h2);
extern uint32 CosmosMurmur3_32(const void *data, size_t len, uint32 seed);

/* ---------------------------------------------------------------------------
 * cosmos_protocol.c: request bodies, headers and response parsing
 * ------------------------------------------------------------------------- */

typedef enum CosmosOpKind
{
	COSMOS_OP_UPSERT,
	COSMOS_OP_DELETE
} CosmosOpKind;

/* One operation of a batch or bulk request; strings need not be NUL-terminated */
typedef struct CosmosOp
{
	CosmosOpKind kind;
	const char *id;
	int			id_len;
	const char *pk_json;		/* partition key value as a JSON array */
	int			pk_len;
	const char *doc;			/* upsert: the document JSON */
	int			doc_len;
} CosmosOp;

/* Result of one operation, from a batch/bulk response or synthesized */
typedef struct CosmosOpResult
{
	int			status;
	int			substatus;
	double		request_charge;
	int			retry_after_ms;
} CosmosOpResult;

/*
 * The JSON array body of a batch or bulk request, built op by op up to a size
 * limit. Every op carries "partitionKey" (a string holding the JSON array),
 * as bulk requires.
 */
extern void CosmosBodyStart(StringInfo out);
extern bool CosmosBodyAddOp(StringInfo out, const CosmosOp *op, int max_bytes);
extern void CosmosBodyFinish(StringInfo out);

/*
 * Append a partition key JSON array as the value of x-ms-documentdb-partitionkey:
 * same JSON, every non-ASCII character escaped as \uXXXX (UTF-16 surrogates).
 */
extern bool CosmosAppendPartitionKeyHeader(StringInfo out, const char *pk_json, int pk_len);

/* Percent-encode an id for a URL path segment (RFC 3986 unreserved kept) */
extern void CosmosAppendUrlEncoded(StringInfo out, const char *s, int len);

/*
 * Parse the per-operation results of a batch/bulk response (200 or 207):
 * a JSON array of {"statusCode":..,"subStatusCode":..,"requestCharge":..,
 * "retryAfterMilliseconds":..}. Fails unless there are exactly nops results.
 */
extern bool CosmosParseBatchResponse(const char *body, size_t len,
									 CosmosOpResult *results, int nops, char **errmsg);

/* Parse a container resource: its partitionKey paths, kind and version */
extern bool CosmosParseContainer(const char *body, size_t len,
								 CosmosPartitionKeyDef *def, char **errmsg);

/* Where a container's provisioned throughput comes from */
typedef enum CosmosOfferLevel
{
	COSMOS_OFFER_NONE,			/* no offer: serverless, or none readable */
	COSMOS_OFFER_CONTAINER,		/* the container's own (dedicated) throughput */
	COSMOS_OFFER_DATABASE		/* its database's throughput, shared by its containers */
} CosmosOfferLevel;

/* A container's provisioned throughput (cosmos_offer.c) */
typedef struct CosmosOffer
{
	CosmosOfferLevel level;
	bool		autoscale;		/* throughput is autoscale's maximum */
	double		throughput;		/* RU/s: manual, or autoscale's maximum */
	char		resource_id[65];	/* the offer's resource: container or database rid */
} CosmosOffer;

/* A container's resource id and its database's, from GET /dbs/{db}/colls/{coll} */
extern bool CosmosParseResourceIds(const char *body, size_t len, char **coll_rid,
								   char **db_rid, char **errmsg);

/* The body of the offers query for a container and its database */
extern char *CosmosOfferQueryBody(const char *coll_rid, const char *db_rid);

/* Parse the offers query's answer: the container's offer, else its database's */
extern bool CosmosParseOffers(const char *body, size_t len, const char *coll_rid,
							  const char *db_rid, CosmosOffer *offer, char **errmsg);

/* One physical partition key range [min, max) */
typedef struct CosmosPkRange
{
	char		id[32];			/* "0" (the emulator sends a number: accepted) */
	char	   *min_inclusive;	/* hex EPK, "" = minimum */
	char	   *max_exclusive;	/* hex EPK, "FF" = maximum */
} CosmosPkRange;

/*
 * Parse GET .../pkranges: {"PartitionKeyRanges":[...]}; ranges named in any
 * "parents" list are dropped (split leftovers), the rest sorted by min and
 * checked to tile "" .. "FF" without gaps. Result palloc'd.
 */
extern bool CosmosParsePkRanges(const char *body, size_t len, CosmosPkRange **ranges,
								int *nranges, char **errmsg);

/* Index of the range holding an effective partition key (binary search) */
extern int	CosmosFindPkRange(const CosmosPkRange *ranges, int nranges, const char *epk);

/* One document of a listing page (the sweep of recover()) */
typedef struct CosmosListedDoc
{
	char	   *id;				/* NUL-terminated; NULL when problem is set */
	char	   *pk_json;		/* its partition key values as a JSON array */
	char	  **values;			/* each value's JSON (scratch) */
	const char *problem;		/* why it can be no row's document, or NULL */
} CosmosListedDoc;

/* The body of a query listing every document's id and partition key values (k0, k1, ...) */
extern void CosmosListQueryBody(StringInfo out, const char *const *pk_columns, int npk);

/* Parse a page of that query; documents that cannot be a row's carry a problem */
extern bool CosmosParseListPage(const char *body, size_t len, int npk, int max_docs,
								CosmosListedDoc **docs, int *ndocs, char **errmsg);

/* The "message" of a Cosmos error body, shortened, for logs; never echoes a request */
extern char *CosmosErrorMessage(const char *body, size_t len);

/* ---------------------------------------------------------------------------
 * cosmos_status.c: what an outcome means (SPEC section 5), one table
 * ------------------------------------------------------------------------- */

typedef enum CosmosOutcome
{
	COSMOS_SUCCESS,				/* 2xx */
	COSMOS_SUCCESS_ABSENT,		/* delete of a missing document (404/0) */
	COSMOS_THROTTLED,			/* 429: wait retry-after, lower concurrency */
	COSMOS_TRANSIENT,			/* 408, 449, 503, 500, resets, timeouts: back off, retry */
	COSMOS_REROUTE,				/* 410/1002,1007,1008: refresh pkranges, retry */
	COSMOS_REFRESH_CONTAINER,	/* 410/1000: refresh container metadata, retry */
	COSMOS_DEPENDENT,			/* 424: failed because another op of the batch failed */
	COSMOS_CONFIG_ERROR,		/* 401, 403, container/database missing: stop, retry slowly */
	COSMOS_POISON				/* 400, 413, 409 on upsert, ...: dead-letter that record */
} CosmosOutcome;

/*
 * Classify an HTTP status/substatus of one operation (or of a whole request,
 * with is_request = true: a request-level 404 means the container is missing).
 */
extern CosmosOutcome CosmosClassify(int status, int substatus, CosmosOpKind op,
									bool is_request);
extern const char *CosmosOutcomeName(CosmosOutcome outcome);

/* Whether a partition key value is a JSON array of npk scalars (cosmos_epk.c) */
extern bool CosmosPartitionKeyValid(const char *pk_json, int pk_len, int npk, char **errmsg);

/* Local checks before sending: ids Cosmos refuses, oversized documents */
extern const char *CosmosInvalidIdReason(const char *id, int id_len);

#endif							/* COSMOS_SINK_COSMOS_H */
