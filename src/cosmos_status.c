/*
 * cosmos_status.c
 *		What a Cosmos DB answer means for the record it carried (SPEC section 5),
 *		decided by one table, and the ids Cosmos DB would refuse.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "compat.h"
#include "cosmos.h"

#define ANY		(-1)

PG_FUNCTION_INFO_V1(cosmos_test_classify);
PG_FUNCTION_INFO_V1(cosmos_test_id_reason);

/* One row of the classification table; ANY matches every value */
typedef struct StatusRule
{
	int			status_min;		/* HTTP status range, inclusive */
	int			status_max;
	int			substatus;		/* x-ms-substatus, or ANY */
	int			op;				/* CosmosOpKind, or ANY */
	int			is_request;		/* 1 whole request, 0 one operation, or ANY */
	CosmosOutcome outcome;
} StatusRule;

/*
 * Every outcome, first match wins. Status 0 is a request that got no answer
 * (connection reset, timeout). Request-level rows apply when the whole request
 * failed, so no per-operation status exists.
 */
static const StatusRule StatusRules[] = {
	/* no HTTP answer: network error or timeout */
	{0, 0, ANY, ANY, ANY, COSMOS_TRANSIENT},
	/* 2xx: done */
	{200, 299, ANY, ANY, ANY, COSMOS_SUCCESS},
	/* 404: the database or container is gone, or (delete) the document already is */
	{404, 404, 1003, ANY, ANY, COSMOS_CONFIG_ERROR},
	{404, 404, ANY, ANY, 1, COSMOS_CONFIG_ERROR},
	{404, 404, ANY, COSMOS_OP_DELETE, 0, COSMOS_SUCCESS_ABSENT},
	{404, 404, ANY, COSMOS_OP_UPSERT, 0, COSMOS_CONFIG_ERROR},
	/* 429: wait for x-ms-retry-after-ms, never give up */
	{429, 429, ANY, ANY, ANY, COSMOS_THROTTLED},
	/* transient: back off and resend */
	{408, 408, ANY, ANY, ANY, COSMOS_TRANSIENT},
	{449, 449, ANY, ANY, ANY, COSMOS_TRANSIENT},
	{500, 500, ANY, ANY, ANY, COSMOS_TRANSIENT},
	{502, 504, ANY, ANY, ANY, COSMOS_TRANSIENT},
	/* 410: partition moved, name cache stale, or plain gone */
	{410, 410, 1002, ANY, ANY, COSMOS_REROUTE},
	{410, 410, 1007, ANY, ANY, COSMOS_REROUTE},
	{410, 410, 1008, ANY, ANY, COSMOS_REROUTE},
	{410, 410, 1000, ANY, ANY, COSMOS_REFRESH_CONTAINER},
	{410, 410, ANY, ANY, ANY, COSMOS_TRANSIENT},
	/* 424: another operation of the atomic batch failed */
	{424, 424, ANY, ANY, ANY, COSMOS_DEPENDENT},
	/* authorization: key, clock, RBAC, firewall, region */
	{401, 401, ANY, ANY, ANY, COSMOS_CONFIG_ERROR},
	{403, 403, ANY, ANY, ANY, COSMOS_CONFIG_ERROR},
	/* 413/3402: the response was too big, the operation itself is fine */
	{413, 413, 3402, ANY, ANY, COSMOS_TRANSIENT},
	/* poison: that record goes to dead_letters */
	{413, 413, ANY, ANY, ANY, COSMOS_POISON},
	{400, 400, ANY, ANY, ANY, COSMOS_POISON},
	{409, 409, ANY, COSMOS_OP_UPSERT, ANY, COSMOS_POISON},
	/* anything else: unknown 4xx is the record's fault, unknown 5xx the service's */
	{400, 499, ANY, ANY, ANY, COSMOS_POISON},
	{500, 599, ANY, ANY, ANY, COSMOS_TRANSIENT},
	/* 1xx, 3xx, nonsense: not a Cosmos DB answer, so the endpoint is wrong */
	{INT_MIN, INT_MAX, ANY, ANY, ANY, COSMOS_CONFIG_ERROR},
};

/* Whether a rule's field matches a value (ANY matches all) */
static inline bool
RuleFieldMatches(int field, int value)
{
	return field == ANY || field == value;
}

/* Classify an HTTP status/substatus of one operation or of a whole request */
CosmosOutcome
CosmosClassify(int status, int substatus, CosmosOpKind op, bool is_request)
{
	int			i;

	for (i = 0; i < lengthof(StatusRules); i++)
	{
		const StatusRule *rule = &StatusRules[i];

		if (status >= rule->status_min && status <= rule->status_max &&
			RuleFieldMatches(rule->substatus, substatus) &&
			RuleFieldMatches(rule->op, (int) op) &&
			RuleFieldMatches(rule->is_request, is_request ? 1 : 0))
			return rule->outcome;
	}
	return COSMOS_CONFIG_ERROR; /* not reached: the last rule matches all */
}

/* Name of an outcome, for logs, dead letters and tests */
const char *
CosmosOutcomeName(CosmosOutcome outcome)
{
	switch (outcome)
	{
		case COSMOS_SUCCESS:
			return "success";
		case COSMOS_SUCCESS_ABSENT:
			return "success_absent";
		case COSMOS_THROTTLED:
			return "throttled";
		case COSMOS_TRANSIENT:
			return "transient";
		case COSMOS_REROUTE:
			return "reroute";
		case COSMOS_REFRESH_CONTAINER:
			return "refresh_container";
		case COSMOS_DEPENDENT:
			return "dependent";
		case COSMOS_CONFIG_ERROR:
			return "config_error";
		case COSMOS_POISON:
			return "poison";
	}
	return "unknown";
}


/* ---------------------------------------------------------------------------
 * SQL-callable wrappers for the regression tests (declared by the test only)
 * ------------------------------------------------------------------------- */

/* cosmos_test_classify(status, substatus, op 'upsert'/'delete', is_request): outcome */
Datum
cosmos_test_classify(PG_FUNCTION_ARGS)
{
	char	   *op = text_to_cstring(PG_GETARG_TEXT_PP(2));
	CosmosOpKind kind;

	if (strcmp(op, "upsert") == 0)
		kind = COSMOS_OP_UPSERT;
	else if (strcmp(op, "delete") == 0)
		kind = COSMOS_OP_DELETE;
	else
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("operation must be upsert or delete")));
	PG_RETURN_TEXT_P(cstring_to_text(CosmosOutcomeName(
		CosmosClassify(PG_GETARG_INT32(0), PG_GETARG_INT32(1), kind, PG_GETARG_BOOL(3)))));
}

/* cosmos_test_id_reason(id): why Cosmos DB would refuse it, or NULL */
Datum
cosmos_test_id_reason(PG_FUNCTION_ARGS)
{
	text	   *id = PG_GETARG_TEXT_PP(0);
	const char *reason = CosmosInvalidIdReason(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));

	if (reason == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}
