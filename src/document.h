/*
 * document.h
 *		Row to JSON: the document of a staging row is exactly to_jsonb(row)
 *		plus "id" (as text), written compactly with cached per-type facts.
 */
#ifndef COSMOS_SINK_DOCUMENT_H
#define COSMOS_SINK_DOCUMENT_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

/* How to_jsonb renders a type (mirrors jsonb's own categories) */
typedef enum JsonCategory
{
	JSONCAT_BOOL,
	JSONCAT_NUMERIC,
	JSONCAT_DATE,
	JSONCAT_TIMESTAMP,
	JSONCAT_TIMESTAMPTZ,
	JSONCAT_JSON,
	JSONCAT_JSONB,
	JSONCAT_ARRAY,
	JSONCAT_COMPOSITE,
	JSONCAT_JSONCAST,
	JSONCAT_TEXT,				/* text, varchar, bpchar: the bytes are the text form */
	JSONCAT_OTHER
} JsonCategory;

/* Cached facts of one type; entries live for the whole process */
typedef struct JsonTypeInfo
{
	Oid			typid;			/* hash key */
	bool		valid;
	Oid			basetypid;		/* after looking through domains */
	int16		typlen;			/* of the base type: -1 for varlena */
	JsonCategory category;
	FmgrInfo	outfunc;		/* type output function (text form) */
	FmgrInfo	castfunc;		/* a superuser's cast to json, for JSONCAT_JSONCAST */
	Oid			elemtype;		/* arrays: element type and layout */
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
} JsonTypeInfo;

/* One column of a relation as it appears in documents */
typedef struct DocumentColumn
{
	bool		skip;			/* dropped, or named "id" (replaced by the id) */
	bool		toastable;		/* may be stored out of line */
	char	   *name;			/* column name */
	char	   *key;			/* JSON-escaped name followed by ':' */
	int			key_len;
	JsonTypeInfo *type;
} DocumentColumn;

typedef struct DocumentShape
{
	int			natts;
	DocumentColumn *columns;
} DocumentShape;

extern JsonTypeInfo *DocumentTypeInfo(Oid typid);
extern DocumentShape *DocumentShapeBuild(TupleDesc desc);
extern void DocumentAppendValue(StringInfo out, Datum value, bool isnull,
								JsonTypeInfo *type);
extern char *DocumentAppendBounded(StringInfo out, Datum value, bool isnull,
								   JsonTypeInfo *type, int max_len);
extern char *DocumentAppendRow(StringInfo out, DocumentShape *shape,
							   Datum *values, bool *nulls, const char *id,
							   int max_len);
extern char *DocumentKeyText(Datum value, JsonTypeInfo *type, int max_len);

#endif							/* COSMOS_SINK_DOCUMENT_H */
