/*
 * cosmos_client.c
 *		The worker's requests to Cosmos DB: signed reads of a container and its
 *		partition key ranges, transactional batch and bulk writes, listing
 *		queries (the sweep of recover()), and the
 *		per-operation results of each (parsed, or synthesized from a request
 *		that failed as a whole). Credentials are loaded from files only.
 */
#include "postgres.h"

#include <time.h>

#include "utils/memutils.h"

#include "cosmos_client.h"
#include "cosmos_sink.h"

static CosmosCredentials Credentials;
static char *Endpoint = NULL;	/* scheme://host[:port], no trailing slash */

/* Load credentials and the endpoint (at start and after each reload) */
bool
CosmosClientConfigure(char **errmsg)
{
	const char *endpoint;
	size_t		len;

	CosmosFreeCredentials(&Credentials);
	memset(&Credentials, 0, sizeof(Credentials));
	if (!CosmosLoadCredentials(CosmosSinkKeyFile, CosmosSinkAadTokenFile, &Credentials, errmsg))
		return false;
	endpoint = CosmosSinkEndpoint[0] ? CosmosSinkEndpoint : Credentials.endpoint;
	if (endpoint == NULL || endpoint[0] == '\0')
	{
		*errmsg = pstrdup("no Cosmos DB endpoint: set cosmos_sink.endpoint, or use a connection string with AccountEndpoint in the key file");
		return false;
	}
	if ((*errmsg = HttpEndpointProblem(endpoint, CosmosSinkTlsVerify)) != NULL)
		return false;
	if (Endpoint)
		pfree(Endpoint);
	Endpoint = MemoryContextStrdup(TopMemoryContext, endpoint);
	len = strlen(Endpoint);
	while (len > 0 && Endpoint[len - 1] == '/')
		Endpoint[--len] = '\0';
	return true;
}

/* Whether the token file changed since it was read */
bool
CosmosClientCredentialsStale(void)
{
	return Credentials.kind == COSMOS_AUTH_AAD_TOKEN && CosmosCredentialsStale(&Credentials);
}

/* Fill a route's signing link and its URL-encoded path (endpoint added per request) */
void
CosmosRouteUrls(SinkRoute *route)
{
	StringInfoData path;

	initStringInfo(&path);
	appendStringInfoString(&path, "dbs/");
	CosmosAppendUrlEncoded(&path, route->cosmos_database, strlen(route->cosmos_database));
	appendStringInfoString(&path, "/colls/");
	CosmosAppendUrlEncoded(&path, route->container, strlen(route->container));
	route->path = MemoryContextStrdup(TopMemoryContext, path.data);
	route->resource_link = MemoryContextStrdup(TopMemoryContext,
											   psprintf("dbs/%s/colls/%s", route->cosmos_database,
														route->container));
	pfree(path.data);
}

/* A new request with a full URL and fresh x-ms-date and signature */
static HttpRequest *
SignedRequest(const char *method, const char *path, const char *suffix,
			  const char *resource_type, const char *resource_link)
{
	char	   *url = psprintf("%s/%s%s", Endpoint, path, suffix);
	char	   *url_copy = strdup(url);
	HttpRequest *req;
	char		date[COSMOS_DATE_LEN];
	StringInfoData auth;

	pfree(url);
	if (url_copy == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	req = HttpRequestNew(method, url_copy);
	CosmosFormatDate(time(NULL), date);
	initStringInfo(&auth);
	if (!CosmosSignRequest(&Credentials, method, resource_type, resource_link, date, &auth))
		elog(ERROR, "cosmos_sink: could not sign a request");
	HttpAddHeader(req, "Authorization", auth.data);
	explicit_bzero(auth.data, auth.len);	/* a token, or a signature valid for minutes */
	pfree(auth.data);
	HttpAddHeader(req, "x-ms-date", date);
	HttpAddHeader(req, "x-ms-version", COSMOS_API_VERSION);
	HttpAddHeader(req, "Accept", "application/json");
	HttpAddHeader(req, "Expect", "");	/* no 100-continue round trip */
	return req;
}

/* GET the container definition (partition key paths, kind, version) */
HttpRequest *
CosmosContainerRequest(SinkRoute *route)
{
	return SignedRequest("GET", route->path, "", "colls", route->resource_link);
}

/* GET the container's partition key ranges */
HttpRequest *
CosmosPkRangesRequest(SinkRoute *route)
{
	return SignedRequest("GET", route->path, "/pkranges", "pkranges", route->resource_link);
}

/* POST /offers: a query for offers (the request takes over body, palloc'd) */
HttpRequest *
CosmosOfferRequest(char *body, int body_len)
{
	HttpRequest *req = SignedRequest("POST", "offers", "", "offers", "");

	req->body = body;
	req->body_len = body_len;
	HttpAddHeader(req, "Content-Type", "application/query+json");
	HttpAddHeader(req, "x-ms-documentdb-isquery", "True");
	return req;
}

/*
 * POST a transactional batch (one logical partition, pk_json its key) or a
 * bulk request (one range). The request takes over body (palloc'd).
 */
HttpRequest *
CosmosWriteRequest(SinkRoute *route, char *body, int body_len, bool atomic,
				   const char *pk_json, int pk_len, const char *range_id)
{
	HttpRequest *req = SignedRequest("POST", route->path, "/docs", "docs",
									 route->resource_link);

	req->body = body;
	req->body_len = body_len;
	HttpAddHeader(req, "Content-Type", "application/json");
	HttpAddHeader(req, "x-ms-cosmos-is-batch-request", "True");
	HttpAddHeader(req, "x-ms-cosmos-batch-atomic", atomic ? "True" : "False");
	HttpAddHeader(req, "x-ms-cosmos-batch-continue-on-error", atomic ? "False" : "True");
	if (atomic)
	{
		StringInfoData pk;

		initStringInfo(&pk);
		if (!CosmosAppendPartitionKeyHeader(&pk, pk_json, pk_len))
			appendBinaryStringInfo(&pk, pk_json, pk_len);
		HttpAddHeader(req, "x-ms-documentdb-partitionkey", pk.data);
		pfree(pk.data);
	}
	else
		HttpAddHeader(req, "x-ms-documentdb-partitionkeyrangeid", range_id);
	return req;
}

/*
 * POST a query (one page of it) to one partition key range: the body is
 * taken over (palloc'd); continuation, when not NULL, asks for the next page.
 * The range id pins the listing to one physical partition, as a real
 * multi-partition container needs for a complete, resumable listing.
 */
HttpRequest *
CosmosQueryRequest(SinkRoute *route, char *body, int body_len, const char *range_id,
				   const char *continuation, int max_items)
{
	HttpRequest *req = SignedRequest("POST", route->path, "/docs", "docs",
									 route->resource_link);
	char		count[16];

	req->body = body;
	req->body_len = body_len;
	snprintf(count, sizeof(count), "%d", max_items);
	HttpAddHeader(req, "Content-Type", "application/query+json");
	HttpAddHeader(req, "x-ms-documentdb-isquery", "True");
	HttpAddHeader(req, "x-ms-documentdb-query-enablecrosspartition", "True");
	HttpAddHeader(req, "x-ms-documentdb-partitionkeyrangeid", range_id);
	HttpAddHeader(req, "x-ms-max-item-count", count);
	if (continuation != NULL)
		HttpAddHeader(req, "x-ms-continuation", continuation);
	return req;
}

/*
 * Per-operation results of a finished write: parsed from a 200/207 body, or
 * the request's own status for every op (a failed request, or a body that
 * cannot be read, which is retried as a transient failure).
 */
void
CosmosOpResults(HttpRequest *req, int nops, CosmosOpResult *results)
{
	char	   *errmsg;
	int			i;

	if ((req->status == 200 || req->status == 207) &&
		CosmosParseBatchResponse(req->response ? req->response : "", req->response_len,
								 results, nops, &errmsg))
		return;
	for (i = 0; i < nops; i++)
	{
		results[i].status = (req->status == 200 || req->status == 207) ? 0 : (int) req->status;
		results[i].substatus = req->substatus;
		results[i].request_charge = req->request_charge / nops;
		results[i].retry_after_ms = req->retry_after_ms;
	}
}

/* One line saying why a request failed: transport error or Cosmos's message */
char *
CosmosRequestProblem(HttpRequest *req)
{
	if (req->status == 0)
		return psprintf("no response from %s: %s", Endpoint,
						req->error[0] ? req->error : curl_easy_strerror(req->curl_code));
	return psprintf("HTTP %ld%s%s: %s", req->status,
					req->substatus ? "/" : "", req->substatus ? psprintf("%d", req->substatus) : "",
					CosmosErrorMessage(req->response ? req->response : "", req->response_len));
}
