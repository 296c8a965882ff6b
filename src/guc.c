/*
 * guc.c
 *		The cosmos_sink.* settings, and the checks of server settings that
 *		logical decoding with this plugin needs (wal_level, plugin allow-list).
 *		No secret is ever a setting: keys and tokens are read from files.
 */
#include "postgres.h"

#include <limits.h>

#include "access/xlog.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "cosmos_sink.h"
#include "http.h"

char	   *CosmosSinkDatabase = NULL;
char	   *CosmosSinkSlotName = NULL;
bool		CosmosSinkEnabled = true;
bool		CosmosSinkFailoverSlot = true;
int			CosmosSinkUnknownOutcomeDelayMs = 5000;
char	   *CosmosSinkEndpoint = NULL;
char	   *CosmosSinkKeyFile = NULL;
char	   *CosmosSinkAadTokenFile = NULL;
char	   *CosmosSinkCaFile = NULL;
bool		CosmosSinkTlsVerify = true;
bool		CosmosSinkHttp2 = true;
int			CosmosSinkMaxInFlight = 16;
int			CosmosSinkBatchMaxOps = 100;
int			CosmosSinkBatchMaxBytes = 1024 * 1024;
int			CosmosSinkMaxRuPerSecond = 0;
bool		CosmosSinkRuBudgetAuto = false;
double		CosmosSinkRuShare = 0.8;
static char *MaxRuPerSecondText = NULL;
int			CosmosSinkRequestTimeoutMs = 10000;
int			CosmosSinkConnectTimeoutMs = 5000;
int			CosmosSinkBufferSizeKb = 64 * 1024;
int			CosmosSinkPollIntervalMs = 10;
int			CosmosSinkLogMinDurationMs = 5000;
int			CosmosSinkDeadLettersMax = 100000;
bool		CosmosSinkSkipUnchanged = true;

/*
 * Parse max_ru_per_second: a number of RU/s (0: none) or 'auto' (follow the
 * provisioned throughput). False when it is neither.
 */
static bool
ParseMaxRuPerSecond(const char *text, bool *automatic, int *ru_per_second)
{
	char	   *end;
	long		v;

	*automatic = pg_strcasecmp(text, "auto") == 0;
	*ru_per_second = 0;
	if (*automatic)
		return true;
	errno = 0;
	v = strtol(text, &end, 10);
	while (*end == ' ')
		end++;
	if (errno != 0 || end == text || *end != '\0' || v < 0 || v > INT_MAX)
		return false;
	*ru_per_second = (int) v;
	return true;
}

/* Refuse a max_ru_per_second that is neither a number nor 'auto' */
static bool
CheckMaxRuPerSecond(char **newval, void **extra, GucSource source)
{
	bool		automatic;
	int			ru_per_second;

	if (ParseMaxRuPerSecond(*newval, &automatic, &ru_per_second))
		return true;
	GUC_check_errdetail("Use a number of request units per second (0 for no budget) or 'auto' for a share (cosmos_sink.ru_share) of the container's provisioned throughput.");
	return false;
}

/* Apply a max_ru_per_second the check hook accepted */
static void
AssignMaxRuPerSecond(const char *newval, void *extra)
{
	(void) ParseMaxRuPerSecond(newval, &CosmosSinkRuBudgetAuto, &CosmosSinkMaxRuPerSecond);
}

/* Refuse slot names that PostgreSQL would refuse later, with its own message */
static bool
CheckSlotName(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (**newval == '\0' || strlen(*newval) >= NAMEDATALEN)
		return false;
	for (p = *newval; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
		{
			GUC_check_errdetail("Replication slot names may only contain lower case letters, numbers, and the underscore character.");
			return false;
		}
	return true;
}

/* The endpoint must be an https URL; plain http only for a loopback host (local emulators) */
static bool
CheckEndpoint(char **newval, void **extra, GucSource source)
{
	char	   *problem;

	if (**newval == '\0')
		return true;
	problem = HttpEndpointProblem(*newval, true);
	if (problem != NULL)
	{
		GUC_check_errdetail("%s.", problem);
		return false;
	}
	return true;
}

/* Define every cosmos_sink.* setting */
void
GucInit(void)
{
	DefineCustomStringVariable("cosmos_sink.database",
							   "Database whose routed staging tables are forwarded.",
							   "The worker connects to this database. Changing it needs a restart.",
							   &CosmosSinkDatabase, "postgres",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cosmos_sink.slot_name",
							   "Name of the logical replication slot the worker consumes.",
							   NULL, &CosmosSinkSlotName, "cosmos_sink",
							   PGC_POSTMASTER, 0, CheckSlotName, NULL, NULL);
	DefineCustomBoolVariable("cosmos_sink.enabled",
							 "Whether the worker forwards changes (off: it waits, WAL is kept).",
							 NULL, &CosmosSinkEnabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("cosmos_sink.failover_slot",
							 "Whether the worker's slot is a failover slot (synchronised to standbys; PostgreSQL 17 and later).",
							 "Applied when the slot is made, and to an existing slot when the worker starts.",
							 &CosmosSinkFailoverSlot, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("cosmos_sink.endpoint",
							   "Cosmos DB account endpoint URL.",
							   NULL, &CosmosSinkEndpoint, "",
							   PGC_SIGHUP, 0, CheckEndpoint, NULL, NULL);
	DefineCustomStringVariable("cosmos_sink.key_file",
							   "File holding the account key, or a connection string.",
							   "Must not be readable by group or others. Re-read on reload.",
							   &CosmosSinkKeyFile, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cosmos_sink.aad_token_file",
							   "File holding a Microsoft Entra ID access token (used instead of key_file).",
							   "Re-read whenever the file changes.",
							   &CosmosSinkAadTokenFile, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("cosmos_sink.ca_file",
							   "File of CA certificates used to verify the endpoint (default: system store).",
							   NULL, &CosmosSinkCaFile, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("cosmos_sink.tls_verify",
							 "Verify the endpoint's TLS certificate and host name.",
							 NULL, &CosmosSinkTlsVerify, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("cosmos_sink.http2",
							 "Use HTTP/2 when the endpoint offers it (off forces HTTP/1.1).",
							 NULL, &CosmosSinkHttp2, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.max_in_flight",
							"Maximum concurrent requests to Cosmos DB.",
							NULL, &CosmosSinkMaxInFlight, 16, 1, 256,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.batch_max_ops",
							"Maximum operations in one batch or bulk request.",
							NULL, &CosmosSinkBatchMaxOps, 100, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.batch_max_bytes",
							"Maximum body size of one batch or bulk request.",
							NULL, &CosmosSinkBatchMaxBytes, 1024 * 1024, 4096, 2 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomStringVariable("cosmos_sink.max_ru_per_second",
							   "Client-side request-unit budget per second: a number (0: none) or 'auto'.",
							   "'auto' reads each container's provisioned throughput (its own, or its database's shared one) and uses cosmos_sink.ru_share of it.",
							   &MaxRuPerSecondText, "0",
							   PGC_SIGHUP, 0, CheckMaxRuPerSecond, AssignMaxRuPerSecond, NULL);
	DefineCustomRealVariable("cosmos_sink.ru_share",
							 "With max_ru_per_second = 'auto': the fraction of a container's provisioned RU/s the sink may use.",
							 "The rest is left to the applications that read and write the same container.",
							 &CosmosSinkRuShare, 0.8, 0.01, 1.0,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.request_timeout_ms",
							"Timeout of one request, counted from when it is sent.",
							NULL, &CosmosSinkRequestTimeoutMs, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.unknown_outcome_delay_ms",
							"After a write whose outcome is unknown, how long its document waits before its next write.",
							"A timed-out or 408/5xx write may still be applied by Cosmos DB; a newer state sent before that could be overwritten by it.",
							&CosmosSinkUnknownOutcomeDelayMs, 5000, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.connect_timeout_ms",
							"Timeout for establishing a connection to the endpoint.",
							NULL, &CosmosSinkConnectTimeoutMs, 5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("cosmos_sink.buffer_size",
							"Memory of the worker: half for changes decoded but not yet acknowledged, half for decoding.",
							"When the first half is full, decoding waits for Cosmos DB (lag grows instead of memory); the second half is the worker's logical_decoding_work_mem (bigger transactions spill to disk).",
							&CosmosSinkBufferSizeKb, 64 * 1024, 1024, 4 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("cosmos_sink.poll_interval_ms",
							"How often the worker looks for new WAL when it has caught up.",
							NULL, &CosmosSinkPollIntervalMs, 10, 1, 10000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("cosmos_sink.log_min_duration_ms",
							"Log every request to Cosmos DB slower than this (-1: none).",
							"Failed requests are always logged, with their activity id.",
							&CosmosSinkLogMinDurationMs, 5000, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("cosmos_sink.dead_letters_max",
							"Most rows cosmos_sink.dead_letters may hold before forwarding pauses.",
							"Rows already retried do not count. When full, the worker waits instead of dropping records.",
							&CosmosSinkDeadLettersMax, 100000, 1, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomBoolVariable("cosmos_sink.skip_unchanged",
							 "Do not send an UPDATE whose new row is byte for byte its old row.",
							 "Needs REPLICA IDENTITY FULL (the whole old row in WAL). resync() and retry_dead_letters() touches are always sent.",
							 &CosmosSinkSkipUnchanged, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("cosmos_sink");
}

/* Whether the comma-separated list of libraries names the cosmos_sink plugin */
static bool
PluginListIncludesUs(const char *list)
{
	char	   *copy = pstrdup(list);
	List	   *names = NIL;
	ListCell   *lc;
	bool		found = false;

	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strcmp(name, COSMOS_SINK_PLUGIN) == 0 ||
			strcmp(name, "$libdir/" COSMOS_SINK_PLUGIN) == 0)
			found = true;
	}
	return found;
}

/*
 * Why a server release is too old to decode safely, or NULL: before 15.13,
 * 16.9 and 17.5 a committing transaction's catalog invalidations were not
 * handed to transactions still running, so one that straddles add_route()
 * would be decoded with a stale route.
 */
static char *
MinorReleaseProblem(int version_num)
{
	int			major = version_num / 10000;
	int			needed = major == 15 ? 150013 : major == 16 ? 160009 : major == 17 ? 170005 : 0;

	if (version_num >= needed)
		return NULL;
	return psprintf("PostgreSQL %d.%d lacks a logical decoding fix cosmos_sink relies on (invalidations of committed transactions reaching running ones): upgrade to %d.%d or later",
					major, version_num % 10000, major, needed % 10000);
}

/* The running server's version number */
static int
ServerVersionNum(void)
{
	const char *v = GetConfigOption("server_version_num", false, false);

	return v ? atoi(v) : PG_VERSION_NUM;
}

PG_FUNCTION_INFO_V1(cosmos_test_minor_release_problem);

/* SQL wrapper for the regression tests: the refusal for a given version number */
Datum
cosmos_test_minor_release_problem(PG_FUNCTION_ARGS)
{
	char	   *problem = MinorReleaseProblem(PG_GETARG_INT32(0));

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

/* Same checks for the worker: false and a message instead of an error */
bool
DecodingPrerequisitesMet(char **problem)
{
	const char *plugins;

	if ((*problem = MinorReleaseProblem(ServerVersionNum())) != NULL)
		return false;
	if (wal_level < WAL_LEVEL_LOGICAL)
	{
		*problem = pstrdup("wal_level must be logical: set wal_level = logical in postgresql.conf and restart the server");
		return false;
	}
	plugins = GetConfigOption("output_plugin_libraries", true, false);
	if (plugins != NULL && !PluginListIncludesUs(plugins))
	{
		*problem = psprintf("output_plugin_libraries = '%s' does not allow the cosmos_sink plugin: set output_plugin_libraries = '%s%s%s' in postgresql.conf and reload",
							plugins, plugins, plugins[0] ? ", " : "", COSMOS_SINK_PLUGIN);
		return false;
	}
	return true;
}

/*
 * Report what stops logical decoding with this plugin, naming the setting to
 * change. output_plugin_libraries only exists in recent minor releases.
 */
void
CheckDecodingPrerequisites(int elevel)
{
	const char *plugins;
	char	   *problem = MinorReleaseProblem(ServerVersionNum());

	if (problem != NULL)
		ereport(elevel,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s", problem)));

	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(elevel,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cosmos_sink needs wal_level = logical"),
				 errhint("Set wal_level = logical in postgresql.conf and restart the server.")));

	plugins = GetConfigOption("output_plugin_libraries", true, false);
	if (plugins != NULL && !PluginListIncludesUs(plugins))
		ereport(elevel,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("output plugin \"%s\" is not allowed by output_plugin_libraries", COSMOS_SINK_PLUGIN),
				 errdetail("output_plugin_libraries is '%s'.", plugins),
				 errhint("Add it in postgresql.conf, e.g. output_plugin_libraries = '%s%s%s', and reload.",
						 plugins, plugins[0] ? ", " : "", COSMOS_SINK_PLUGIN)));
}
