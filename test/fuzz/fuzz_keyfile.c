/*
 * fuzz_keyfile.c
 *		libFuzzer target for the credential parsers of src/cosmos_auth.c:
 *		every input is the text of a key file (a bare base64 account key or a
 *		connection string) for CosmosParseKeyText, and the content of a file
 *		(mode 0600, in a private temporary folder) for CosmosLoadCredentials,
 *		once as cosmos_sink.key_file and once as cosmos_sink.aad_token_file
 *		(the Entra ID token parser). What parses is then used to sign a
 *		request and freed with CosmosFreeCredentials.
 *
 * Besides crashes, leaks (the credentials' strings are malloc'd, so leak
 * detection is meaningful) and undefined behaviour, and any ereport(ERROR),
 * these promises of cosmos.h/cosmos_auth.c are checked: results are
 * well-formed, the file loader agrees with the text parser, messages never
 * quote the secret, CosmosFreeCredentials zeroes everything.
 */
#include "postgres.h"

#include <ctype.h>
#include <fcntl.h>
#include <unistd.h>

#include "lib/stringinfo.h"

#include "cosmos.h"
#include "shim.h"

#define MAX_FILE_BYTES		(64 * 1024)	/* what CosmosLoadCredentials reads */
#define SECRET_RUN_MIN		20	/* a run this long of key characters is secret */

static char folder[64];
static char path[96];

static void
RemoveFiles(void)
{
	unlink(path);
	rmdir(folder);
}

/* Write the input to the private key file */
static void
WriteKeyFile(const uint8_t *data, size_t size)
{
	int			fd;

	if (folder[0] == '\0')
	{
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

		snprintf(folder, sizeof(folder), "%s/cfz.XXXXXX", base);
		if (mkdtemp(folder) == NULL)
			shim_fail("cannot create a folder in %s: %m", base);
		snprintf(path, sizeof(path), "%s/key", folder);
		atexit(RemoveFiles);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t) size) || close(fd) != 0)
		shim_fail("cannot write %s: %m", path);
}

static bool
IsBase64Char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '+' || c == '/' || c == '=';
}

static bool
IsJwtChar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '=' || c == '.';
}

/* The long runs of key characters the messages themselves contain */
static const char *const message_words[] = {
	"AccountEndpoint=https", "header.payload.signature", "cosmos_sink.aad_token_file",
	"cosmos_sink.key_file", NULL
};

/*
 * A message must not quote the secret: no run of SECRET_RUN_MIN or more key
 * (or token) characters of the input may appear in it, unless the message's
 * own text holds that run anyway.
 */
static void
CheckNoSecret(const char *what, const char *msg, const uint8_t *data, size_t size,
			  bool (*is_key_char) (unsigned char))
{
	size_t		i = 0;

	while (i < size)
	{
		size_t		start = i;
		char	   *run;
		bool		known = false;

		while (i < size && is_key_char(data[i]))
			i++;
		if (i - start < SECRET_RUN_MIN)
		{
			i = Max(i, start + 1);
			continue;
		}
		run = pnstrdup((const char *) data + start, i - start);
		for (int w = 0; message_words[w] != NULL; w++)
			known |= strstr(message_words[w], run) != NULL;
		if (!known && strstr(msg, run) != NULL)
			shim_fail("%s message quotes the secret \"%s\": %s", what, run, msg);
		pfree(run);
	}
}

/* Every byte outside RFC 3986 unreserved appears as %XX */
static void
CheckUrlEncoded(const char *s)
{
	for (const char *p = s; *p; p++)
	{
		if (*p == '%' && isxdigit((unsigned char) p[1]) && isxdigit((unsigned char) p[2]))
			p += 2;
		else if (!isalnum((unsigned char) *p) && strchr("-_.~", *p) == NULL)
			shim_fail("Authorization header value is not URL-encoded: %s", s);
	}
}

/* Sign a request with parsed credentials and check the header value */
static void
CheckSign(const CosmosCredentials *creds)
{
	StringInfoData out;
	char		date[COSMOS_DATE_LEN];
	const char *prefix = creds->kind == COSMOS_AUTH_MASTER_KEY ?
		"type%3Dmaster%26ver%3D1.0%26sig%3D" : "type%3Daad%26ver%3D1.0%26sig%3D";

	CosmosFormatDate(1493254272, date);
	if (strcmp(date, "Thu, 27 Apr 2017 00:51:12 GMT") != 0)
		shim_fail("CosmosFormatDate gave \"%s\"", date);
	initStringInfo(&out);
	if (!CosmosSignRequest(creds, "POST", "docs", "dbs/db/colls/coll", date, &out))
		shim_fail("CosmosSignRequest refused credentials that parsed");
	if (strncmp(out.data, prefix, strlen(prefix)) != 0)
		shim_fail("Authorization header value \"%s\" does not start with %s", out.data, prefix);
	CheckUrlEncoded(out.data);
}

/* The promise of CosmosFreeCredentials: nothing left, the key zeroed */
static void
FreeAndCheck(CosmosCredentials *creds)
{
	static const CosmosCredentials zero;

	CosmosFreeCredentials(creds);
	if (memcmp(creds, &zero, sizeof(zero)) != 0)
		shim_fail("CosmosFreeCredentials left something in the credentials");
}

/* A parsed master key: well-formed, endpoint if any an http(s) URL without spaces */
static void
CheckMasterKey(const CosmosCredentials *creds)
{
	if (creds->kind != COSMOS_AUTH_MASTER_KEY || creds->key_len < 1 ||
		creds->key_len > COSMOS_MAX_KEY_BYTES || creds->aad_token != NULL)
		shim_fail("key parsed as kind %d, %d bytes", (int) creds->kind, creds->key_len);
	if (creds->endpoint != NULL)
	{
		if (pg_strncasecmp(creds->endpoint, "https://", 8) != 0 &&
			pg_strncasecmp(creds->endpoint, "http://", 7) != 0)
			shim_fail("endpoint \"%s\" accepted", creds->endpoint);
		for (const char *p = creds->endpoint; *p; p++)
			if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7F)
				shim_fail("endpoint with byte 0x%02x accepted", (unsigned char) *p);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool		has_nul = memchr(data, '\0', size) != NULL;
	CosmosCredentials parsed;
	CosmosCredentials loaded;
	CosmosCredentials untouched;
	char	   *parse_err = NULL;
	char	   *load_err = NULL;
	bool		parse_ok = false;
	bool		load_ok;

	if (size > MAX_FILE_BYTES)
		return 0;

	/* the text parser, on the input as a C string (files with a NUL are refused anyway) */
	if (!has_nul)
	{
		char	   *text = malloc(size + 1);

		memcpy(text, data, size);
		text[size] = '\0';
		memset(&parsed, 0, sizeof(parsed));
		parse_ok = CosmosParseKeyText(text, &parsed, &parse_err);
		free(text);
		if (parse_ok)
		{
			CheckMasterKey(&parsed);
			CheckSign(&parsed);
		}
		else
		{
			if (parse_err == NULL)
				shim_fail("CosmosParseKeyText failed without a message");
			CheckNoSecret("CosmosParseKeyText", parse_err, data, size, IsBase64Char);
		}
	}

	/* the same text as a key file */
	WriteKeyFile(data, size);
	memset(&loaded, 0x5A, sizeof(loaded));
	untouched = loaded;
	load_ok = CosmosLoadCredentials(path, NULL, &loaded, &load_err);
	if (load_ok != parse_ok)
		shim_fail("key file %s but its text %s (%s)", load_ok ? "loads" : "does not load",
				  parse_ok ? "parses" : "does not parse", load_ok ? parse_err : load_err);
	if (load_ok)
	{
		CheckMasterKey(&loaded);
		if (loaded.key_len != parsed.key_len ||
			memcmp(loaded.key, parsed.key, parsed.key_len) != 0 ||
			(loaded.endpoint == NULL) != (parsed.endpoint == NULL) ||
			(loaded.endpoint && strcmp(loaded.endpoint, parsed.endpoint) != 0))
			shim_fail("key file and key text give different credentials");
		if (loaded.source_file == NULL || strcmp(loaded.source_file, path) != 0)
			shim_fail("loaded credentials do not name their file");
		if (CosmosCredentialsStale(&loaded))
			shim_fail("credentials stale right after loading");
		FreeAndCheck(&loaded);
	}
	else
	{
		if (load_err == NULL)
			shim_fail("CosmosLoadCredentials failed without a message");
		if (memcmp(&loaded, &untouched, sizeof(loaded)) != 0)
			shim_fail("CosmosLoadCredentials failed but changed the credentials");
		if (parse_err != NULL && strstr(load_err, parse_err) == NULL)
			shim_fail("key file message \"%s\" lacks the parser's \"%s\"", load_err, parse_err);
		CheckNoSecret("CosmosLoadCredentials(key_file)", load_err, data, size, IsBase64Char);
	}
	if (parse_ok)
		FreeAndCheck(&parsed);

	/* the same file as an Entra ID token file */
	memset(&loaded, 0x5A, sizeof(loaded));
	load_err = NULL;
	if (CosmosLoadCredentials(NULL, path, &loaded, &load_err))
	{
		int			dots = 0;

		if (loaded.kind != COSMOS_AUTH_AAD_TOKEN || loaded.aad_token == NULL ||
			loaded.key_len != 0 || loaded.endpoint != NULL)
			shim_fail("token parsed as kind %d", (int) loaded.kind);
		for (const char *p = loaded.aad_token; *p; p++)
		{
			if (!IsJwtChar((unsigned char) *p))
				shim_fail("token with byte 0x%02x accepted", (unsigned char) *p);
			dots += *p == '.';
		}
		if (dots != 2 || loaded.aad_token[0] == '\0')
			shim_fail("token \"%s\" accepted", loaded.aad_token);
		CheckSign(&loaded);
		if (CosmosCredentialsStale(&loaded))
			shim_fail("token credentials stale right after loading");
		FreeAndCheck(&loaded);
	}
	else
	{
		if (load_err == NULL)
			shim_fail("CosmosLoadCredentials(aad) failed without a message");
		if (memcmp(&loaded, &untouched, sizeof(loaded)) != 0)
			shim_fail("CosmosLoadCredentials(aad) failed but changed the credentials");
		CheckNoSecret("CosmosLoadCredentials(aad_token_file)", load_err, data, size, IsJwtChar);
	}

	shim_reset();
	return 0;
}
