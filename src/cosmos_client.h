/*
 * cosmos_client.h
 *		Requests to Cosmos DB for the worker: endpoint and credentials, signed
 *		container/pkranges reads, batch and bulk writes, and per-op results.
 */
#ifndef COSMOS_SINK_COSMOS_CLIENT_H
#define COSMOS_SINK_COSMOS_CLIENT_H

#include "postgres.h"

#include "batch.h"
#include "cosmos.h"
#include "http.h"

extern bool CosmosClientConfigure(char **errmsg);
extern bool CosmosClientCredentialsStale(void);
extern void CosmosRouteUrls(SinkRoute *route);
extern HttpRequest *CosmosContainerRequest(SinkRoute *route);
extern HttpRequest *CosmosPkRangesRequest(SinkRoute *route);
extern HttpRequest *CosmosOfferRequest(char *body, int body_len);
extern HttpRequest *CosmosWriteRequest(SinkRoute *route, char *body, int body_len,
									   bool atomic, const char *pk_json, int pk_len,
									   const char *range_id);
extern HttpRequest *CosmosQueryRequest(SinkRoute *route, char *body, int body_len,
									   const char *range_id, const char *continuation,
									   int max_items);
extern void CosmosOpResults(HttpRequest *req, int nops, CosmosOpResult *results);
extern char *CosmosRequestProblem(HttpRequest *req);

#endif							/* COSMOS_SINK_COSMOS_CLIENT_H */
