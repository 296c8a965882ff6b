/*
 * cosmos_auth.c
 *		Credentials and request signing: the account key (bare or inside a
 *		connection string) or an Entra ID token read from a file, the x-ms-date
 *		value, and the Authorization header. No message ever holds a secret.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/base64.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "compat.h"
#include "cosmos.h"

#define COSMOS_MAX_FILE_BYTES	(64 * 1024)
#define COSMOS_SHA256_LEN		32

/* Longest base64 text of a key that fits COSMOS_MAX_KEY_BYTES once decoded */
#define COSMOS_MAX_KEY_B64		((COSMOS_MAX_KEY_BYTES + 2) / 3 * 4)

PG_FUNCTION_INFO_V1(cosmos_test_sign);
PG_FUNCTION_INFO_V1(cosmos_test_sign_aad);
PG_FUNCTION_INFO_V1(cosmos_test_format_date);
PG_FUNCTION_INFO_V1(cosmos_test_parse_key);
PG_FUNCTION_INFO_V1(cosmos_test_load_credentials);

/* Whitespace as key files and connection strings may carry it */
static inline bool
IsKeySpace(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Narrow [*start, *end) to its text without surrounding whitespace */
static void
TrimSpace(const char **start, const char **end)
{
	while (*start < *end && IsKeySpace(**start))
		(*start)++;
	while (*end > *start && IsKeySpace((*end)[-1]))
		(*end)--;
}

/* RFC 3986 unreserved characters (ASCII only, whatever the locale says) */
static inline bool
IsUnreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '.' || c == '~';
}

/* Characters of one part of a JWT: base64url, '=' padding tolerated */
static inline bool
IsJwtChar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '=';
}

/* Case-insensitive comparison of a counted name with a keyword */
static bool
NameIs(const char *name, size_t len, const char *keyword)
{
	return strlen(keyword) == len && pg_strncasecmp(name, keyword, len) == 0;
}

/* Wipe and free a malloc'd secret */
static void
FreeSecret(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* malloc'd copy of a counted string (the caller owns it beyond memory contexts) */
static char *
MallocStrndup(const char *s, size_t len, char **errmsg)
{
	char	   *copy = malloc(len + 1);

	if (copy == NULL)
	{
		*errmsg = pstrdup("out of memory");
		return NULL;
	}
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/*
 * Decode a base64 account key into creds->key. what names the key's origin
 * in messages ("the key", "AccountKey"); the key itself is never quoted.
 */
static bool
DecodeKey(const char *b64, size_t len, const char *what, CosmosCredentials *creds,
		  char **errmsg)
{
	char		buf[COSMOS_MAX_KEY_B64];	/* decoded size <= 3/4 of the text */
	int			n;

	if (len == 0)
	{
		*errmsg = psprintf("%s is empty", what);
		return false;
	}
	if (len > COSMOS_MAX_KEY_B64)
	{
		*errmsg = psprintf("%s is too long for an account key (%zu characters, at most %d)",
						   what, len, COSMOS_MAX_KEY_B64);
		return false;
	}
	n = CompatB64Decode(b64, (int) len, buf, sizeof(buf));
	if (n <= 0 || n > COSMOS_MAX_KEY_BYTES)
	{
		explicit_bzero(buf, sizeof(buf));
		*errmsg = psprintf("%s is not valid base64 (expected the account key as shown in the Azure portal, or a connection string AccountEndpoint=https://...;AccountKey=...;)",
						   what);
		return false;
	}
	memcpy(creds->key, buf, n);
	creds->key_len = n;
	explicit_bzero(buf, sizeof(buf));
	return true;
}

/* Check an AccountEndpoint value: an http(s) URL with a host */
static bool
CheckEndpoint(const char *s, size_t len, char **errmsg)
{
	size_t		scheme = 0;
	size_t		i;

	if (len >= 8 && pg_strncasecmp(s, "https://", 8) == 0)
		scheme = 8;
	else if (len >= 7 && pg_strncasecmp(s, "http://", 7) == 0)
		scheme = 7;
	if (scheme == 0 || len == scheme)
	{
		*errmsg = pstrdup("AccountEndpoint in the connection string must be an https:// URL");
		return false;
	}
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c <= ' ' || c >= 0x7F)
		{
			*errmsg = pstrdup("AccountEndpoint in the connection string contains spaces or control characters");
			return false;
		}
	}
	return true;
}

/*
 * Parse AccountEndpoint=...;AccountKey=...; (any order, names case-insensitive,
 * whitespace around parts ignored, other names ignored, last ';' optional).
 */
static bool
ParseConnectionString(const char *text, size_t len, CosmosCredentials *creds,
					  char **errmsg)
{
	const char *p = text;
	const char *end = text + len;
	const char *key = NULL;
	size_t		key_len = 0;
	const char *endpoint = NULL;
	size_t		endpoint_len = 0;
	int			part = 0;

	while (p < end)
	{
		const char *semi = memchr(p, ';', end - p);
		const char *part_end = semi ? semi : end;
		const char *name = p;
		const char *name_end;
		const char *value;
		const char *value_end = part_end;
		const char *eq;

		part++;
		p = semi ? semi + 1 : end;
		TrimSpace(&name, &value_end);
		if (name == value_end)
			continue;			/* empty part, e.g. after the last ';' */
		eq = memchr(name, '=', value_end - name);
		if (eq == NULL)
		{
			*errmsg = psprintf("part %d of the connection string is not of the form Name=value",
							   part);
			return false;
		}
		name_end = eq;
		value = eq + 1;
		TrimSpace(&name, &name_end);
		TrimSpace(&value, &value_end);
		if (NameIs(name, name_end - name, "AccountKey"))
		{
			if (key != NULL)
			{
				*errmsg = pstrdup("the connection string has AccountKey twice");
				return false;
			}
			key = value;
			key_len = value_end - value;
		}
		else if (NameIs(name, name_end - name, "AccountEndpoint"))
		{
			if (endpoint != NULL)
			{
				*errmsg = pstrdup("the connection string has AccountEndpoint twice");
				return false;
			}
			endpoint = value;
			endpoint_len = value_end - value;
		}
	}
	if (key == NULL)
	{
		*errmsg = pstrdup("the connection string has no AccountKey (expected AccountEndpoint=https://...;AccountKey=...;)");
		return false;
	}
	if (endpoint != NULL && !CheckEndpoint(endpoint, endpoint_len, errmsg))
		return false;
	if (!DecodeKey(key, key_len, "AccountKey in the connection string", creds, errmsg))
		return false;
	if (endpoint != NULL &&
		(creds->endpoint = MallocStrndup(endpoint, endpoint_len, errmsg)) == NULL)
		return false;
	return true;
}

/* Parse the text of a key file: a bare base64 key or a connection string */
bool
CosmosParseKeyText(const char *text, CosmosCredentials *creds, char **errmsg)
{
	const char *start = text;
	const char *end = text + strlen(text);
	CosmosCredentials parsed;
	bool		ok;

	memset(&parsed, 0, sizeof(parsed));
	TrimSpace(&start, &end);
	if (start == end)
	{
		*errmsg = pstrdup("the key text is empty");
		return false;
	}
	/* a base64 key holds no ';' and never starts with "Account" */
	if (memchr(start, ';', end - start) != NULL ||
		(end - start >= 7 && pg_strncasecmp(start, "Account", 7) == 0))
		ok = ParseConnectionString(start, end - start, &parsed, errmsg);
	else
		ok = DecodeKey(start, end - start, "the key", &parsed, errmsg);
	if (!ok)
	{
		CosmosFreeCredentials(&parsed);
		return false;
	}
	parsed.kind = COSMOS_AUTH_MASTER_KEY;
	*creds = parsed;
	explicit_bzero(&parsed, sizeof(parsed));
	return true;
}

/*
 * Take an Entra ID access token (a JWT: three base64url parts joined by '.'),
 * trimmed; anything else is refused so it cannot break the header.
 */
static bool
ParseAadToken(const char *text, size_t len, CosmosCredentials *creds, char **errmsg)
{
	const char *start = text;
	const char *end = text + len;
	const char *p;
	int			dots = 0;

	TrimSpace(&start, &end);
	if (start == end)
	{
		*errmsg = pstrdup("the token is empty");
		return false;
	}
	for (p = start; p < end; p++)
	{
		if (*p == '.')
			dots++;
		else if (!IsJwtChar((unsigned char) *p))
		{
			*errmsg = pstrdup("the token is not a JWT (it holds characters other than base64url and '.')");
			return false;
		}
	}
	if (dots != 2)
	{
		*errmsg = pstrdup("the token is not a JWT (expected header.payload.signature)");
		return false;
	}
	if ((creds->aad_token = MallocStrndup(start, end - start, errmsg)) == NULL)
		return false;
	creds->kind = COSMOS_AUTH_AAD_TOKEN;
	return true;
}

/*
 * Read a credentials file into a palloc'd buffer (NUL-terminated), checking
 * it is a regular file of at most 64 kB, owned by the server's OS user, that
 * no one else can access. Opened without blocking (a FIFO cannot hang the
 * worker); uses the opened file's stat, so checks and read agree.
 */
static char *
ReadSecretFile(const char *path, const char *what, struct stat *st,
			   size_t *len, char **errmsg)
{
	int			fd;
	char	   *buf;
	size_t		n = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
	if (fd < 0)
	{
		*errmsg = psprintf("could not open %s \"%s\": %m", what, path);
		return NULL;
	}
	if (fstat(fd, st) != 0)
	{
		*errmsg = psprintf("could not stat %s \"%s\": %m", what, path);
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st->st_mode))
	{
		*errmsg = psprintf("%s \"%s\" is not a regular file", what, path);
		close(fd);
		return NULL;
	}
	if (st->st_uid != geteuid())
	{
		*errmsg = psprintf("%s \"%s\" is not owned by the server's OS user (uid %u, the file's is %u); run: chown %u %s",
						   what, path, (unsigned int) geteuid(), (unsigned int) st->st_uid,
						   (unsigned int) geteuid(), path);
		close(fd);
		return NULL;
	}
	if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		*errmsg = psprintf("%s \"%s\" is %s by group or others (mode %04o); run: chmod 600 %s",
						   what, path,
						   (st->st_mode & (S_IRGRP | S_IROTH)) ? "readable" : "accessible",
						   (unsigned int) (st->st_mode & 07777), path);
		close(fd);
		return NULL;
	}
	if (st->st_size > COSMOS_MAX_FILE_BYTES)
	{
		*errmsg = psprintf("%s \"%s\" is larger than 64 kB", what, path);
		close(fd);
		return NULL;
	}
	/* one byte more than allowed, to notice a file that grew since fstat */
	buf = palloc(COSMOS_MAX_FILE_BYTES + 2);
	for (;;)
	{
		ssize_t		r = read(fd, buf + n, COSMOS_MAX_FILE_BYTES + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
		{
			*errmsg = psprintf("could not read %s \"%s\": %m", what, path);
			close(fd);
			explicit_bzero(buf, n);
			pfree(buf);
			return NULL;
		}
		if (r == 0 || (n += r) > COSMOS_MAX_FILE_BYTES)
			break;
	}
	close(fd);
	buf[n] = '\0';
	if (n > COSMOS_MAX_FILE_BYTES || memchr(buf, '\0', n) != NULL)
	{
		*errmsg = n > COSMOS_MAX_FILE_BYTES ?
			psprintf("%s \"%s\" is larger than 64 kB", what, path) :
			psprintf("%s \"%s\" is not a text file (it contains a NUL byte)", what, path);
		explicit_bzero(buf, n);
		pfree(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

/*
 * Load credentials from cosmos_sink.key_file or cosmos_sink.aad_token_file
 * (exactly one set; NULL or "" = unset). creds is filled only on success.
 */
bool
CosmosLoadCredentials(const char *key_file, const char *aad_token_file,
					  CosmosCredentials *creds, char **errmsg)
{
	bool		is_key = key_file != NULL && key_file[0] != '\0';
	bool		is_aad = aad_token_file != NULL && aad_token_file[0] != '\0';
	const char *path = is_key ? key_file : aad_token_file;
	const char *what = is_key ? "key file" : "token file";
	CosmosCredentials loaded;
	struct stat st;
	char	   *text;
	size_t		len;
	char	   *detail = NULL;
	bool		ok;

	if (is_key == is_aad)
	{
		*errmsg = pstrdup(is_key ?
						  "both cosmos_sink.key_file and cosmos_sink.aad_token_file are set: set only one" :
						  "no credentials: set cosmos_sink.key_file (account key or connection string) or cosmos_sink.aad_token_file");
		return false;
	}
	text = ReadSecretFile(path, what, &st, &len, errmsg);
	if (text == NULL)
		return false;
	memset(&loaded, 0, sizeof(loaded));
	ok = is_key ? CosmosParseKeyText(text, &loaded, &detail) :
		ParseAadToken(text, len, &loaded, &detail);
	explicit_bzero(text, len);
	pfree(text);
	if (ok && (loaded.source_file = MallocStrndup(path, strlen(path), &detail)) == NULL)
		ok = false;
	if (!ok)
	{
		CosmosFreeCredentials(&loaded);
		*errmsg = psprintf("%s \"%s\": %s", what, path, detail);
		return false;
	}
	loaded.source_mtime = st.st_mtime;
	loaded.source_mtime_nsec = st.st_mtim.tv_nsec;
	loaded.source_size = st.st_size;
	loaded.source_ino = st.st_ino;
	*creds = loaded;
	explicit_bzero(&loaded, sizeof(loaded));
	return true;
}

/*
 * Whether the file the credentials came from changed (mtime or size) since it
 * was loaded; a file that vanished counts as changed so the reload reports it.
 */
bool
CosmosCredentialsStale(const CosmosCredentials *creds)
{
	struct stat st;

	if (creds->source_file == NULL)
		return false;
	if (stat(creds->source_file, &st) != 0)
		return true;
	return st.st_mtime != creds->source_mtime || st.st_mtim.tv_nsec != creds->source_mtime_nsec ||
		st.st_size != creds->source_size || st.st_ino != creds->source_ino;
}

/* Free what CosmosLoadCredentials/CosmosParseKeyText allocated; zero the key */
void
CosmosFreeCredentials(CosmosCredentials *creds)
{
	FreeSecret(creds->aad_token);
	free(creds->endpoint);
	free(creds->source_file);
	explicit_bzero(creds, sizeof(*creds));
	creds->kind = COSMOS_AUTH_NONE;
}

/* RFC 1123 date for x-ms-date from fixed English names, whatever LC_TIME says */
void
CosmosFormatDate(time_t when, char out[COSMOS_DATE_LEN])
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm	tm;

	if (gmtime_r(&when, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(out, COSMOS_DATE_LEN, "%s, %02d %s %04d %02d:%02d:%02d GMT",
			 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
			 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Append s lowercased (ASCII only, as the signature wants) */
static void
AppendLower(StringInfo out, const char *s)
{
	for (; s != NULL && *s; s++)
		appendStringInfoChar(out, pg_ascii_tolower((unsigned char) *s));
}

/* Append s with every byte outside RFC 3986 unreserved as %XX */
static void
AppendHeaderEncoded(StringInfo out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (IsUnreserved(c))
			appendStringInfoChar(out, c);
		else
		{
			appendStringInfoChar(out, '%');
			appendStringInfoChar(out, hex[c >> 4]);
			appendStringInfoChar(out, hex[c & 0xF]);
		}
	}
}

/*
 * Append the URL-encoded Authorization header value for one request: an HMAC
 * of the five-line payload for a master key, the token as is for AAD.
 */
bool
CosmosSignRequest(const CosmosCredentials *creds, const char *verb,
				  const char *resource_type, const char *resource_link,
				  const char *date, StringInfo out)
{
	StringInfoData payload;
	StringInfoData header;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	char		sig[COSMOS_SHA256_LEN * 2];
	int			sig_len;

	if (creds == NULL)
		return false;
	if (creds->kind == COSMOS_AUTH_AAD_TOKEN && creds->aad_token != NULL)
	{
		initStringInfo(&header);
		appendStringInfo(&header, "type=aad&ver=1.0&sig=%s", creds->aad_token);
		AppendHeaderEncoded(out, header.data);
		explicit_bzero(header.data, header.len);
		pfree(header.data);
		return true;
	}
	if (creds->kind != COSMOS_AUTH_MASTER_KEY || creds->key_len <= 0)
		return false;

	initStringInfo(&payload);
	AppendLower(&payload, verb);
	appendStringInfoChar(&payload, '\n');
	AppendLower(&payload, resource_type);
	appendStringInfoChar(&payload, '\n');
	appendStringInfoString(&payload, resource_link ? resource_link : "");
	appendStringInfoChar(&payload, '\n');
	AppendLower(&payload, date);
	appendStringInfoString(&payload, "\n\n");

	if (HMAC(EVP_sha256(), creds->key, creds->key_len, (unsigned char *) payload.data,
			 payload.len, mac, &mac_len) == NULL || mac_len != COSMOS_SHA256_LEN)
	{
		pfree(payload.data);
		return false;
	}
	pfree(payload.data);
	sig_len = CompatB64Encode(mac, (int) mac_len, sig, sizeof(sig) - 1);
	explicit_bzero(mac, sizeof(mac));
	if (sig_len < 0)
		return false;
	sig[sig_len] = '\0';

	initStringInfo(&header);
	appendStringInfo(&header, "type=master&ver=1.0&sig=%s", sig);
	AppendHeaderEncoded(out, header.data);
	pfree(header.data);
	return true;
}

/* ---------------------------------------------------------------------------
 * SQL-callable wrappers for the regression tests (declared by the test only)
 * ------------------------------------------------------------------------- */

/* Sign with the test wrappers' first four arguments (verb, type, link, date); frees creds */
static text *
SignFromArgs(FunctionCallInfo fcinfo, CosmosCredentials *creds)
{
	StringInfoData out;
	bool		ok;

	initStringInfo(&out);
	ok = CosmosSignRequest(creds, text_to_cstring(PG_GETARG_TEXT_PP(0)),
						   text_to_cstring(PG_GETARG_TEXT_PP(1)),
						   text_to_cstring(PG_GETARG_TEXT_PP(2)),
						   text_to_cstring(PG_GETARG_TEXT_PP(3)), &out);
	CosmosFreeCredentials(creds);
	if (!ok)
		ereport(ERROR, (errmsg("could not sign the request")));
	return cstring_to_text(out.data);
}

/* cosmos_test_sign(verb, resource_type, resource_link, date, key_text): header value */
Datum
cosmos_test_sign(PG_FUNCTION_ARGS)
{
	char	   *key_text = text_to_cstring(PG_GETARG_TEXT_PP(4));
	CosmosCredentials creds;
	char	   *problem = NULL;

	memset(&creds, 0, sizeof(creds));
	if (!CosmosParseKeyText(key_text, &creds, &problem))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", problem)));
	PG_RETURN_TEXT_P(SignFromArgs(fcinfo, &creds));
}

/* cosmos_test_sign_aad(verb, resource_type, resource_link, date, token): header value */
Datum
cosmos_test_sign_aad(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(4);
	CosmosCredentials creds;
	char	   *problem = NULL;

	memset(&creds, 0, sizeof(creds));
	if (!ParseAadToken(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token), &creds, &problem))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", problem)));
	PG_RETURN_TEXT_P(SignFromArgs(fcinfo, &creds));
}

/* cosmos_test_format_date(unix seconds): the x-ms-date value */
Datum
cosmos_test_format_date(PG_FUNCTION_ARGS)
{
	char		date[COSMOS_DATE_LEN];

	CosmosFormatDate((time_t) PG_GETARG_INT64(0), date);
	PG_RETURN_TEXT_P(cstring_to_text(date));
}

/* Describe credentials for tests: kind, decoded key length, endpoint; never the key */
static text *
DescribeCredentials(const CosmosCredentials *creds)
{
	StringInfoData out;

	initStringInfo(&out);
	if (creds->kind == COSMOS_AUTH_MASTER_KEY)
		appendStringInfo(&out, "master key, %d bytes", creds->key_len);
	else if (creds->kind == COSMOS_AUTH_AAD_TOKEN)
		appendStringInfo(&out, "aad token, %zu characters", strlen(creds->aad_token));
	else
		appendStringInfoString(&out, "none");
	if (creds->endpoint)
		appendStringInfo(&out, ", endpoint %s", creds->endpoint);
	return cstring_to_text(out.data);
}

/* cosmos_test_parse_key(text): what the key text holds, or "error: ..." */
Datum
cosmos_test_parse_key(PG_FUNCTION_ARGS)
{
	char	   *key_text = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CosmosCredentials creds;
	char	   *problem = NULL;
	text	   *result;

	memset(&creds, 0, sizeof(creds));
	if (!CosmosParseKeyText(key_text, &creds, &problem))
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("error: %s", problem)));
	result = DescribeCredentials(&creds);
	CosmosFreeCredentials(&creds);
	PG_RETURN_TEXT_P(result);
}

/* cosmos_test_load_credentials(key_file, aad_file), NULLs allowed: result or "error: ..." */
Datum
cosmos_test_load_credentials(PG_FUNCTION_ARGS)
{
	char	   *key_file = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *aad_file = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	CosmosCredentials creds;
	char	   *problem = NULL;
	text	   *result;

	memset(&creds, 0, sizeof(creds));
	if (!CosmosLoadCredentials(key_file, aad_file, &creds, &problem))
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("error: %s", problem)));
	result = DescribeCredentials(&creds);
	CosmosFreeCredentials(&creds);
	PG_RETURN_TEXT_P(result);
}
