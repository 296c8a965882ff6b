/*
 * cosmos_json.h
 *		Helpers of the response parsers (cosmos_protocol.c, cosmos_offer.c):
 *		the non-throwing JSON parser run over network data, and token checks.
 */
#ifndef COSMOS_SINK_COSMOS_JSON_H
#define COSMOS_SINK_COSMOS_JSON_H

#include "postgres.h"

#include "common/jsonapi.h"

#include "compat.h"

/* What a semantic action returns when it lets parsing go on */
#define SEM_ACTION CompatJsonSemResult
#define SEM_OK COMPAT_JSON_SEM_RESULT(false)

extern bool ParseJson(const char *what, const char *body, size_t len, JsonSemAction *sem,
					  char **errmsg);
extern void SetParseError(char **error, const char *fmt,...) pg_attribute_printf(2, 3);
extern bool JsonTokenDouble(const char *token, JsonTokenType type, double *value);

#endif							/* COSMOS_SINK_COSMOS_JSON_H */
