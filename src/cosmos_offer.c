/*
 * cosmos_offer.c
 *		Cosmos DB offers (provisioned throughput) on the wire: the resource
 *		ids of a container read (its _rid, and its database's from _self), the
 *		query for the offers of both, and the parse of its answer. Parsers
 *		return false and a message, never throw: the endpoint is not trusted.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "cosmos.h"
#include "cosmos_json.h"

#define RID_MAX_LEN		64		/* real ids are 8 (database) or 12 (container) characters */
#define OFFERS_MAX		1000	/* offers read from one answer */
#define OFFER_MIN_THROUGHPUT 100	/* RU/s: no real offer is smaller (manual ones start at 400) */

/* Whether s is a plausible resource id: base64 as Cosmos DB writes it */
static bool
ValidRid(const char *s)
{
	size_t		len = strlen(s);

	if (len == 0 || len > RID_MAX_LEN)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
			  *s == '+' || *s == '=' || *s == '-' || *s == '_'))
			return false;
	return true;
}

/* ---------------------------------------------------------------------------
 * Resource ids of a container: {"_rid":"<coll>","_self":"dbs/<db>/colls/<coll>/",..}
 * ------------------------------------------------------------------------- */

typedef struct RidParse
{
	int			depth;
	int			field;			/* 1: _rid, 2: _self, 0: other (top level only) */
	char	   *rid;
	char	   *self;
} RidParse;

/* Track nesting: only top-level fields count */
static SEM_ACTION
RidNest(void *state)
{
	((RidParse *) state)->depth++;
	return SEM_OK;
}

/* Leave an object or array */
static SEM_ACTION
RidUnnest(void *state)
{
	((RidParse *) state)->depth--;
	return SEM_OK;
}

/* Note whether the current top-level field is _rid or _self */
static SEM_ACTION
RidFieldStart(void *state, char *fname, bool isnull)
{
	RidParse   *st = state;

	if (st->depth == 1)
		st->field = strcmp(fname, "_rid") == 0 ? 1 : strcmp(fname, "_self") == 0 ? 2 : 0;
	pfree(fname);
	return SEM_OK;
}

/* Keep the strings of _rid and _self */
static SEM_ACTION
RidScalar(void *state, char *token, JsonTokenType tokentype)
{
	RidParse   *st = state;

	if (st->depth == 1 && st->field != 0 && tokentype == JSON_TOKEN_STRING)
	{
		char	  **dst = st->field == 1 ? &st->rid : &st->self;

		if (*dst)
			pfree(*dst);
		*dst = token;
		return SEM_OK;
	}
	pfree(token);
	return SEM_OK;
}

/*
 * A container's resource id and its database's (the first segment of
 * "_self": dbs/<db rid>/colls/<coll rid>/), both checked to be ids. palloc'd.
 */
bool
CosmosParseResourceIds(const char *body, size_t len, char **coll_rid, char **db_rid,
					   char **errmsg)
{
	RidParse	st = {0};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = RidNest,
		.object_end = RidUnnest,
		.array_start = RidNest,
		.array_end = RidUnnest,
		.object_field_start = RidFieldStart,
		.scalar = RidScalar,
	};
	char	   *slash;

	if (!ParseJson("container", body, len, &sem, errmsg))
		return false;
	if (st.rid == NULL || !ValidRid(st.rid))
	{
		*errmsg = pstrdup("container has no valid _rid");
		return false;
	}
	if (st.self == NULL || strncmp(st.self, "dbs/", 4) != 0 ||
		(slash = strchr(st.self + 4, '/')) == NULL ||
		strncmp(slash, "/colls/", 7) != 0)
	{
		*errmsg = pstrdup("container has no _self of the form dbs/<id>/colls/<id>/");
		return false;
	}
	*slash = '\0';
	if (!ValidRid(st.self + 4))
	{
		*errmsg = pstrdup("container's _self names no valid database id");
		return false;
	}
	*coll_rid = st.rid;
	*db_rid = pstrdup(st.self + 4);
	return true;
}

/* ---------------------------------------------------------------------------
 * The offers query
 * ------------------------------------------------------------------------- */

/* The body of POST /offers asking for the offers of a container and of its database */
char *
CosmosOfferQueryBody(const char *coll_rid, const char *db_rid)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"query\":\"SELECT * FROM root WHERE root.offerResourceId = @coll"
						   " OR root.offerResourceId = @db\",\"parameters\":[{\"name\":\"@coll\",\"value\":");
	escape_json(&out, coll_rid);
	appendStringInfoString(&out, "},{\"name\":\"@db\",\"value\":");
	escape_json(&out, db_rid);
	appendStringInfoString(&out, "}]}");
	return out.data;
}

/* ---------------------------------------------------------------------------
 * Offers: {"Offers":[{"offerResourceId":..,"content":{"offerThroughput":..,
 * "offerAutopilotSettings":{"maxThroughput":..}}},..],..}
 * ------------------------------------------------------------------------- */

typedef enum OfferField
{
	OFFER_OTHER,
	OFFER_RESOURCE_ID,			/* depth 3 */
	OFFER_CONTENT,				/* depth 3 */
	OFFER_THROUGHPUT,			/* depth 4, in content */
	OFFER_AUTOPILOT,			/* depth 4, in content */
	OFFER_MAX_THROUGHPUT		/* depth 5, in offerAutopilotSettings */
} OfferField;

typedef struct OfferParseItem
{
	char	   *resource_id;
	double		throughput;		/* -1: absent */
	double		max_throughput; /* autoscale maximum; -1: absent */
} OfferParseItem;

typedef struct OfferParse
{
	int			depth;			/* 1 in the answer, 2 in Offers, 3 in an offer, ... */
	bool		in_list;		/* the current top-level field is "Offers" */
	bool		list_seen;
	OfferField	at[6];			/* the field being read at each depth */
	OfferParseItem *items;
	int			nitems;
	char	   *error;
} OfferParse;

/* The offer being read */
static OfferParseItem *
OfferCurrent(OfferParse *st)
{
	return st->nitems > 0 ? &st->items[st->nitems - 1] : NULL;
}

/* Enter an object or array: a new offer at depth 2 of Offers */
static void
OfferNested(OfferParse *st, bool is_array)
{
	if (st->depth == 0 && is_array)
		SetParseError(&st->error, "offers answer is not a JSON object");
	else if (st->depth == 1 && st->in_list)
	{
		if (!is_array)
			SetParseError(&st->error, "offers answer: Offers is not an array");
		st->list_seen = true;
	}
	else if (st->depth == 2 && st->in_list)
	{
		if (is_array)
			SetParseError(&st->error, "offers answer: an offer is not an object");
		else if (st->nitems >= OFFERS_MAX)
			SetParseError(&st->error, "offers answer holds more than %d offers", OFFERS_MAX);
		else
		{
			OfferParseItem *it = &st->items[st->nitems++];

			it->resource_id = NULL;
			it->throughput = it->max_throughput = -1;
		}
	}
	st->depth++;
	if (st->depth < lengthof(st->at))
		st->at[st->depth] = OFFER_OTHER;
}

/* Enter an object */
static SEM_ACTION
OfferObjectStart(void *state)
{
	OfferNested(state, false);
	return SEM_OK;
}

/* Enter an array */
static SEM_ACTION
OfferArrayStart(void *state)
{
	OfferNested(state, true);
	return SEM_OK;
}

/* Leave an object or array */
static SEM_ACTION
OfferEnd(void *state)
{
	((OfferParse *) state)->depth--;
	return SEM_OK;
}

/* Whether the parse is inside field f of the level above (depth - 1) */
static bool
OfferInside(OfferParse *st, OfferField f)
{
	return st->in_list && st->depth >= 4 && st->depth - 1 < lengthof(st->at) &&
		st->at[st->depth - 1] == f;
}

/* Note the current field at each level of an offer */
static SEM_ACTION
OfferFieldStart(void *state, char *fname, bool isnull)
{
	OfferParse *st = state;
	OfferField	f = OFFER_OTHER;

	if (st->depth == 1)
		st->in_list = strcmp(fname, "Offers") == 0;
	else if (st->in_list && st->depth == 3)
		f = strcmp(fname, "offerResourceId") == 0 ? OFFER_RESOURCE_ID :
			strcmp(fname, "content") == 0 ? OFFER_CONTENT : OFFER_OTHER;
	else if (st->depth == 4 && OfferInside(st, OFFER_CONTENT))
		f = strcmp(fname, "offerThroughput") == 0 ? OFFER_THROUGHPUT :
			strcmp(fname, "offerAutopilotSettings") == 0 ? OFFER_AUTOPILOT : OFFER_OTHER;
	else if (st->depth == 5 && OfferInside(st, OFFER_AUTOPILOT) && strcmp(fname, "maxThroughput") == 0)
		f = OFFER_MAX_THROUGHPUT;
	if (st->depth < lengthof(st->at))
		st->at[st->depth] = f;
	pfree(fname);
	return SEM_OK;
}

/*
 * A throughput figure: at least the service's smallest offer (a tiny figure
 * would all but stop the sink) and below a sanity bound
 */
static void
OfferStoreThroughput(OfferParse *st, const char *what, const char *token, JsonTokenType type,
					 double *dst)
{
	double		v;

	if (type == JSON_TOKEN_NULL)
		return;
	if (!JsonTokenDouble(token, type, &v) || v < OFFER_MIN_THROUGHPUT || v > 1e9)
		SetParseError(&st->error, "offers answer: %s \"%s\" is not a throughput in RU/s", what, token);
	else
		*dst = v;
}

/* A scalar of an offer: its resource id or a throughput */
static SEM_ACTION
OfferScalar(void *state, char *token, JsonTokenType tokentype)
{
	OfferParse *st = state;
	OfferParseItem *it = OfferCurrent(st);
	OfferField	f = st->depth < lengthof(st->at) ? st->at[st->depth] : OFFER_OTHER;

	if (st->depth == 0)
		SetParseError(&st->error, "offers answer is not a JSON object");
	else if (st->depth == 1 && st->in_list)
		SetParseError(&st->error, "offers answer: Offers is not an array");
	else if (it == NULL || !st->in_list)
		 /* skipped */ ;
	else if (st->depth == 3 && f == OFFER_RESOURCE_ID)
	{
		if (tokentype != JSON_TOKEN_STRING)
			SetParseError(&st->error, "offers answer: an offerResourceId is not a string");
		else
		{
			it->resource_id = token;
			return SEM_OK;
		}
	}
	else if (st->depth == 4 && f == OFFER_THROUGHPUT)
		OfferStoreThroughput(st, "offerThroughput", token, tokentype, &it->throughput);
	else if (st->depth == 5 && f == OFFER_MAX_THROUGHPUT)
		OfferStoreThroughput(st, "maxThroughput", token, tokentype, &it->max_throughput);
	pfree(token);
	return SEM_OK;
}

/* Fill an offer from a parsed item: autoscale's maximum, else the manual figure */
static bool
OfferFromItem(const OfferParseItem *it, CosmosOfferLevel level, CosmosOffer *offer)
{
	if (it->max_throughput <= 0 && it->throughput <= 0)
		return false;
	offer->level = level;
	offer->autoscale = it->max_throughput > 0;
	offer->throughput = offer->autoscale ? it->max_throughput : it->throughput;
	strlcpy(offer->resource_id, it->resource_id, sizeof(offer->resource_id));
	return true;
}

/*
 * Parse the answer of the offers query: the container's own offer wins over
 * its database's (shared throughput); neither is COSMOS_OFFER_NONE (a
 * serverless account, or throughput set elsewhere).
 */
bool
CosmosParseOffers(const char *body, size_t len, const char *coll_rid, const char *db_rid,
				  CosmosOffer *offer, char **errmsg)
{
	OfferParse	st = {0};
	JsonSemAction sem = {
		.semstate = &st,
		.object_start = OfferObjectStart,
		.object_end = OfferEnd,
		.array_start = OfferArrayStart,
		.array_end = OfferEnd,
		.object_field_start = OfferFieldStart,
		.scalar = OfferScalar,
	};
	const OfferParseItem *for_db = NULL;
	int			i;

	memset(offer, 0, sizeof(*offer));
	offer->level = COSMOS_OFFER_NONE;
	st.items = palloc(sizeof(OfferParseItem) * OFFERS_MAX);
	if (!ParseJson("offers answer", body, len, &sem, errmsg))
		return false;
	if (st.error == NULL && !st.list_seen)
		st.error = pstrdup("offers answer has no Offers list");
	if (st.error != NULL)
	{
		*errmsg = st.error;
		return false;
	}
	for (i = 0; i < st.nitems; i++)
	{
		const OfferParseItem *it = &st.items[i];

		if (it->resource_id == NULL)
			continue;
		if (strcmp(it->resource_id, coll_rid) == 0 &&
			OfferFromItem(it, COSMOS_OFFER_CONTAINER, offer))
			return true;
		if (strcmp(it->resource_id, db_rid) == 0)
			for_db = it;
	}
	if (for_db != NULL)
		(void) OfferFromItem(for_db, COSMOS_OFFER_DATABASE, offer);
	return true;
}

/* ---------------------------------------------------------------------------
 * SQL wrappers for the regression tests (sql/cosmos_protocol.sql)
 * ------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(cosmos_test_parse_resource_ids);

/* parse_resource_ids(text) -> "coll=<rid> db=<rid>", or "error: ..." */
Datum
cosmos_test_parse_resource_ids(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	char	   *coll_rid;
	char	   *db_rid;
	char	   *problem;

	if (!CosmosParseResourceIds(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &coll_rid, &db_rid,
								&problem))
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("error: %s", problem)));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("coll=%s db=%s", coll_rid, db_rid)));
}

PG_FUNCTION_INFO_V1(cosmos_test_parse_offers);

/* parse_offers(body, coll_rid, db_rid) -> "container 400 RU/s (manual) of <rid>", "none", or "error: ..." */
Datum
cosmos_test_parse_offers(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	CosmosOffer offer;
	char	   *problem;

	if (!CosmosParseOffers(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body),
						   text_to_cstring(PG_GETARG_TEXT_PP(1)), text_to_cstring(PG_GETARG_TEXT_PP(2)),
						   &offer, &problem))
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("error: %s", problem)));
	if (offer.level == COSMOS_OFFER_NONE)
		PG_RETURN_TEXT_P(cstring_to_text("none"));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s %.0f RU/s (%s) of %s",
											  offer.level == COSMOS_OFFER_CONTAINER ? "container" : "database",
											  offer.throughput, offer.autoscale ? "autoscale maximum" : "manual",
											  offer.resource_id)));
}

PG_FUNCTION_INFO_V1(cosmos_test_offer_query);

/* offer_query(coll_rid, db_rid) -> the body of the offers query */
Datum
cosmos_test_offer_query(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CosmosOfferQueryBody(text_to_cstring(PG_GETARG_TEXT_PP(0)),
														  text_to_cstring(PG_GETARG_TEXT_PP(1)))));
}
