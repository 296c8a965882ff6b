/*
 * http.h
 *		The HTTP driver: one libcurl multi handle per process, driven by
 *		PostgreSQL's wait machinery (latch + sockets in one WaitEventSet).
 */
#ifndef COSMOS_SINK_HTTP_H
#define COSMOS_SINK_HTTP_H

#include "postgres.h"

#include <curl/curl.h>

#include "datatype/timestamp.h"

#define HTTP_MAX_RESPONSE_BYTES (8 * 1024 * 1024)
#define HTTP_MAX_RETRY_AFTER_MS 60000	/* longest wait an endpoint can ask for */
#define HTTP_MAX_REQUEST_CHARGE 100000.0	/* above any real request's RU charge */
#define HTTP_MAX_CONTINUATION 16384	/* longest x-ms-continuation kept (real ones: a few hundred bytes) */

/*
 * One request. The caller fills the request part (url and headers malloc'd,
 * body palloc'd in a context that outlives the request: all owned by the
 * request and freed by HttpRequestFree) and gets the response part back from
 * HttpPoll (malloc'd: curl fills it from its callbacks).
 */
typedef struct HttpRequest
{
	/* request */
	const char *method;			/* static string: "GET", "POST", "DELETE" */
	char	   *url;
	struct curl_slist *headers;
	char	   *body;			/* palloc'd, or NULL */
	size_t		body_len;
	void	   *owner;			/* caller's pointer, untouched */

	/* response */
	long		status;			/* HTTP status, or 0 when no response came */
	int			substatus;		/* x-ms-substatus */
	double		request_charge; /* x-ms-request-charge */
	int			retry_after_ms; /* x-ms-retry-after-ms */
	char		activity_id[64];	/* x-ms-activity-id */
	char	   *continuation;	/* x-ms-continuation (malloc'd), or NULL */
	bool		continuation_too_long;	/* one came, longer than HTTP_MAX_CONTINUATION */
	char	   *response;		/* body, NUL-terminated */
	size_t		response_len;
	bool		response_truncated;
	CURLcode	curl_code;		/* transport result */
	char		error[CURL_ERROR_SIZE]; /* transport error text */
	TimestampTz sent_at;
	TimestampTz done_at;

	CURL	   *easy;			/* private */
} HttpRequest;

extern char *HttpEndpointProblem(const char *url, bool tls_verify);
extern void HttpInit(void);
extern void HttpShutdown(void);
extern HttpRequest *HttpRequestNew(const char *method, char *url);
extern void HttpAddHeader(HttpRequest *req, const char *name, const char *value);
extern void HttpRequestFree(HttpRequest *req);
extern void HttpSubmit(HttpRequest *req);
extern int	HttpInFlight(void);
extern int	HttpPoll(long timeout_ms, HttpRequest **done, int max_done);
extern long HttpDurationMs(const HttpRequest *req);

#endif							/* COSMOS_SINK_HTTP_H */
