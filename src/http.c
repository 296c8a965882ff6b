/*
 * http.c
 *		The HTTP driver. One curl multi handle for the life of the process
 *		(connection reuse, HTTP/2 multiplexing), its sockets waited on together
 *		with the process latch, so signals and postmaster death are noticed at
 *		once. curl callbacks never ereport or palloc: they only record facts.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cosmos_sink.h"
#include "http.h"

#define HTTP_MAX_SOCKETS 512

/* A socket curl asked us to watch */
typedef struct HttpSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} HttpSocket;

static CURLM *Multi = NULL;
static int	InFlight = 0;
static HttpSocket Sockets[HTTP_MAX_SOCKETS];
static int	NumSockets = 0;
static bool SocketsChanged = true;
static TimestampTz CurlDeadline = 0;	/* when curl wants a timeout action; 0 = none */
static WaitEventSet *EventSet = NULL;

/* Socket callback: remember which sockets curl wants watched, and how */
static int
SocketCallback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < NumSockets; i++)
		if (Sockets[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < NumSockets)
			Sockets[i] = Sockets[--NumSockets];
	}
	else if (i < NumSockets)
	{
		if (Sockets[i].what == what)
			return 0;
		Sockets[i].what = what;
	}
	else if (NumSockets < HTTP_MAX_SOCKETS)
	{
		Sockets[NumSockets].fd = fd;
		Sockets[NumSockets].what = what;
		NumSockets++;
	}
	else
		return -1;				/* curl fails the transfer; never reached below max_in_flight */
	SocketsChanged = true;
	return 0;
}

/* Timer callback: curl wants to be called back after timeout_ms (-1: cancel) */
static int
TimerCallback(CURLM *multi, long timeout_ms, void *userp)
{
	CurlDeadline = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * Parse a decimal header value without locale or allocation, clamped to
 * [0, max]: NaN, infinities, negatives and garbage read as 0, so nothing an
 * endpoint answers can poison the RU budget or stall the worker.
 */
static double
HeaderNumber(const char *value, size_t len, double max)
{
	char		buf[64];
	char	   *end;
	double		v;

	len = Min(len, sizeof(buf) - 1);
	memcpy(buf, value, len);
	buf[len] = '\0';
	v = strtod(buf, &end);
	if (end == buf || isnan(v) || v < 0)
		return 0;
	return Min(v, max);
}

/* Whether a URL's host is this machine (a local emulator may use plain http) */
static bool
HostIsLoopback(const char *host)
{
	struct in_addr addr;

	if (pg_strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
		return true;
	return inet_pton(AF_INET, host, &addr) == 1 && (ntohl(addr.s_addr) >> 24) == 127;
}

/*
 * Why an endpoint URL may not be used, or NULL: it must be https with the
 * certificate verified (a master-key signature does not cover the body, and a
 * token travels as is), except for a loopback host, where a local emulator
 * may serve plain http or a certificate nobody signed.
 */
char *
HttpEndpointProblem(const char *url, bool tls_verify)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *problem = NULL;

	if (u == NULL)
		return pstrdup("out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		problem = psprintf("endpoint \"%s\" is not a valid URL; use e.g. 'https://myaccount.documents.azure.com:443/'", url);
	else if (pg_strcasecmp(scheme, "https") != 0 &&
			 !(pg_strcasecmp(scheme, "http") == 0 && HostIsLoopback(host)))
		problem = psprintf("endpoint \"%s\" must use https:// (plain http is allowed only for a loopback host, for local emulators)", url);
	else if (!tls_verify && !HostIsLoopback(host))
		problem = psprintf("cosmos_sink.tls_verify = off is allowed only for a loopback endpoint, not \"%s\": set it on, and cosmos_sink.ca_file to the CA that signed the endpoint's certificate", url);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return problem;
}

/*
 * Keep a feed's continuation token (malloc'd: curl callbacks never palloc);
 * one longer than HTTP_MAX_CONTINUATION is dropped and marked, so the caller
 * can tell a cut listing from a finished one.
 */
static void
KeepContinuation(HttpRequest *req, const char *value, size_t len)
{
	free(req->continuation);
	req->continuation = NULL;
	req->continuation_too_long = len > HTTP_MAX_CONTINUATION;
	if (len == 0 || req->continuation_too_long)
		return;
	req->continuation = malloc(len + 1);
	if (req->continuation == NULL)
	{
		req->continuation_too_long = true;	/* treated like an unusable token */
		return;
	}
	memcpy(req->continuation, value, len);
	req->continuation[len] = '\0';
}

/* Header callback: keep the x-ms-* facts of the response */
static size_t
HeaderCallback(char *data, size_t size, size_t nitems, void *userdata)
{
	HttpRequest *req = userdata;
	size_t		len = size * nitems;
	const char *colon = memchr(data, ':', len);
	size_t		namelen;
	const char *value;
	size_t		valuelen;

	if (colon == NULL)
		return len;
	namelen = colon - data;
	value = colon + 1;
	valuelen = len - namelen - 1;
	while (valuelen > 0 && (*value == ' ' || *value == '\t'))
		value++, valuelen--;
	while (valuelen > 0 && (value[valuelen - 1] == '\r' || value[valuelen - 1] == '\n' ||
							value[valuelen - 1] == ' '))
		valuelen--;

	if (namelen == 19 && pg_strncasecmp(data, "x-ms-request-charge", 19) == 0)
		req->request_charge = HeaderNumber(value, valuelen, HTTP_MAX_REQUEST_CHARGE);
	else if (namelen == 19 && pg_strncasecmp(data, "x-ms-retry-after-ms", 19) == 0)
		req->retry_after_ms = (int) HeaderNumber(value, valuelen, HTTP_MAX_RETRY_AFTER_MS);
	else if (namelen == 14 && pg_strncasecmp(data, "x-ms-substatus", 14) == 0)
		req->substatus = (int) HeaderNumber(value, valuelen, 65535);
	else if (namelen == 16 && pg_strncasecmp(data, "x-ms-activity-id", 16) == 0)
	{
		valuelen = Min(valuelen, sizeof(req->activity_id) - 1);
		memcpy(req->activity_id, value, valuelen);
		req->activity_id[valuelen] = '\0';
	}
	else if (namelen == 17 && pg_strncasecmp(data, "x-ms-continuation", 17) == 0)
		KeepContinuation(req, value, valuelen);
	return len;
}

/* Write callback: append the body to a malloc'd buffer, up to a hard cap */
static size_t
WriteCallback(char *data, size_t size, size_t nmemb, void *userdata)
{
	HttpRequest *req = userdata;
	size_t		len = size * nmemb;
	char	   *grown;

	if (req->response_len + len > HTTP_MAX_RESPONSE_BYTES)
	{
		req->response_truncated = true;
		return 0;				/* curl aborts the transfer: CURLE_WRITE_ERROR */
	}
	grown = realloc(req->response, req->response_len + len + 1);
	if (grown == NULL)
		return 0;
	req->response = grown;
	memcpy(req->response + req->response_len, data, len);
	req->response_len += len;
	req->response[req->response_len] = '\0';
	return len;
}

/* Create the multi handle; called once per process */
void
HttpInit(void)
{
	if (Multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "could not initialize libcurl");
	Multi = curl_multi_init();
	if (Multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	curl_multi_setopt(Multi, CURLMOPT_SOCKETFUNCTION, SocketCallback);
	curl_multi_setopt(Multi, CURLMOPT_TIMERFUNCTION, TimerCallback);
	curl_multi_setopt(Multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	curl_multi_setopt(Multi, CURLMOPT_MAXCONNECTS, (long) 64);
}

/* Release curl at process exit (process-local state only) */
void
HttpShutdown(void)
{
	if (Multi != NULL)
		curl_multi_cleanup(Multi);
	Multi = NULL;
}

/* A new request owning url (malloc'd) */
HttpRequest *
HttpRequestNew(const char *method, char *url)
{
	HttpRequest *req = calloc(1, sizeof(HttpRequest));

	if (req == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	req->method = method;
	req->url = url;
	return req;
}

/* Add "Name: value" to a request's headers */
void
HttpAddHeader(HttpRequest *req, const char *name, const char *value)
{
	char	   *line = psprintf("%s: %s", name, value);
	struct curl_slist *list = curl_slist_append(req->headers, line);

	explicit_bzero(line, strlen(line));	/* the Authorization line holds a token */
	pfree(line);
	if (list == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	req->headers = list;
}

/* Free a finished (or never submitted) request */
void
HttpRequestFree(HttpRequest *req)
{
	struct curl_slist *h;

	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	for (h = req->headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));	/* curl's copies of the headers */
	curl_slist_free_all(req->headers);
	free(req->url);
	if (req->body != NULL)
		pfree(req->body);
	free(req->response);
	free(req->continuation);
	free(req);
}

/* Set every option of an easy handle: TLS, timeouts, callbacks, never verbose */
static void
ConfigureEasy(HttpRequest *req)
{
	CURL	   *easy = req->easy;

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "cosmos_sink/" COSMOS_SINK_VERSION);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->error);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) CosmosSinkRequestTimeoutMs);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) CosmosSinkConnectTimeoutMs);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, 15L);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
					 CosmosSinkHttp2 ? (long) CURL_HTTP_VERSION_2TLS : (long) CURL_HTTP_VERSION_1_1);
	/* off only ever for a loopback endpoint (HttpEndpointProblem) */
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, CosmosSinkTlsVerify ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, CosmosSinkTlsVerify ? 2L : 0L);
	if (CosmosSinkCaFile != NULL && CosmosSinkCaFile[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, CosmosSinkCaFile);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, HeaderCallback);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, WriteCallback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	else if (strcmp(req->method, "GET") != 0)
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
}

/* Start a request now; its timeout counts from here */
void
HttpSubmit(HttpRequest *req)
{
	req->easy = curl_easy_init();
	if (req->easy == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not create a libcurl handle")));
	ConfigureEasy(req);
	req->status = 0;
	req->substatus = 0;
	req->request_charge = 0;
	req->retry_after_ms = 0;
	req->activity_id[0] = '\0';
	free(req->continuation);
	req->continuation = NULL;
	req->continuation_too_long = false;
	req->response_len = 0;
	req->response_truncated = false;
	req->error[0] = '\0';
	req->sent_at = GetCurrentTimestamp();
	if (curl_multi_add_handle(Multi, req->easy) != CURLM_OK)
		elog(ERROR, "could not add a request to the libcurl multi handle");
	InFlight++;
}

/* Requests submitted and not yet returned by HttpPoll */
int
HttpInFlight(void)
{
	return InFlight;
}

/* Milliseconds between send and completion */
long
HttpDurationMs(const HttpRequest *req)
{
	return (long) ((req->done_at - req->sent_at) / 1000);
}

/* Rebuild the wait set from the latch, postmaster death and curl's sockets */
static void
RebuildEventSet(void)
{
	int			i;

	if (EventSet != NULL)
		FreeWaitEventSet(EventSet);
	EventSet = CompatCreateWaitEventSet(NumSockets + 2);
	AddWaitEventToSet(EventSet, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(EventSet, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < NumSockets; i++)
	{
		uint32		events = 0;

		if (Sockets[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (Sockets[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(EventSet, events, Sockets[i].fd, NULL,
						  (void *) (intptr_t) Sockets[i].fd);
	}
	SocketsChanged = false;
}

/* Move finished transfers from curl into the done array */
static int
CollectDone(HttpRequest **done, int max_done)
{
	CURLMsg    *msg;
	int			left;
	int			n = 0;

	while (n < max_done && (msg = curl_multi_info_read(Multi, &left)) != NULL)
	{
		HttpRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		req->curl_code = msg->data.result;
		if (req->curl_code == CURLE_OK)
			curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
		else
			req->status = 0;
		req->done_at = GetCurrentTimestamp();
		curl_multi_remove_handle(Multi, req->easy);
		curl_easy_cleanup(req->easy);
		req->easy = NULL;
		InFlight--;
		done[n++] = req;
	}
	return n;
}

/*
 * Wait up to timeout_ms for socket activity, curl's timer or the latch, let
 * curl do its work, and return the finished requests. A set latch returns at
 * once (the caller resets it and checks for interrupts).
 */
int
HttpPoll(long timeout_ms, HttpRequest **done, int max_done)
{
	WaitEvent	events[HTTP_MAX_SOCKETS + 2];
	int			nevents;
	int			running;
	int			i;
	int			n;

	/* results from a previous round that did not fit in done[] */
	n = CollectDone(done, max_done);
	if (n > 0)
		return n;

	if (SocketsChanged || EventSet == NULL)
		RebuildEventSet();
	if (CurlDeadline != 0)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), CurlDeadline);

		timeout_ms = Min(timeout_ms, remaining);
	}

	nevents = WaitEventSetWait(EventSet, timeout_ms, events, lengthof(events),
							   PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
			continue;
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		curl_multi_socket_action(Multi, (curl_socket_t) (intptr_t) events[i].user_data,
								 flags, &running);
	}
	/* curl's own timer is due: timeouts, connection steps, retries */
	if (CurlDeadline != 0 && GetCurrentTimestamp() >= CurlDeadline)
	{
		CurlDeadline = 0;
		curl_multi_socket_action(Multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	return CollectDone(done, max_done);
}
