/*
 * document.c
 *		Row to JSON. A document is to_jsonb(row) with "id" (the id column as
 *		text) added: same keys, same value for every type. Type facts are cached
 *		per process and refreshed on catalog invalidations, so the hot path does
 *		no catalog lookups.
 *
 *		Documents are built by the worker (a superuser) and by superusers
 *		decoding with SQL, from data any table owner controls. So no code a
 *		non-superuser wrote runs here: a cast to json is used only when a
 *		superuser owns its function (else the type's output function, which
 *		only a superuser can write, gives the text), a failing cast makes the
 *		row a dead letter, and building stops once a document passes the
 *		limit, before a huge value is rendered.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_cast.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "compat.h"
#include "document.h"
#include "subxact.h"

static HTAB *TypeInfoHash = NULL;
static MemoryContext TypeInfoContext = NULL;

/*
 * The document being built: longest it may grow, and why building stopped.
 * Every entry point (DocumentAppendRow, DocumentAppendBounded) sets both.
 */
static int	DocumentMaxLen = INT_MAX;
static char *DocumentProblem = NULL;

/* Mark every cached type stale; entries stay allocated so pointers remain valid */
static void
InvalidateTypeInfo(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	JsonTypeInfo *entry;

	if (TypeInfoHash == NULL)
		return;
	hash_seq_init(&status, TypeInfoHash);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/* Create the per-process type cache on first use */
static void
TypeInfoHashInit(void)
{
	HASHCTL		ctl;

	TypeInfoContext = AllocSetContextCreate(TopMemoryContext,
											"cosmos_sink type cache",
											ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(JsonTypeInfo);
	ctl.hcxt = TypeInfoContext;
	TypeInfoHash = hash_create("cosmos_sink type cache", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterSyscacheCallback(TYPEOID, InvalidateTypeInfo, (Datum) 0);
	/* a cast or its function's owner decides whether the cast is used */
	CacheRegisterSyscacheCallback(CASTSOURCETARGET, InvalidateTypeInfo, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, InvalidateTypeInfo, (Datum) 0);
}

/*
 * Whether a cast function may run in the worker: only a superuser's (the
 * bootstrap superuser owns those of every extension, trusted ones included).
 * A table owner's cast would otherwise run with the worker's rights.
 */
static bool
CastFunctionTrusted(Oid funcid)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		return false;
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	return superuser_arg(owner);
}

/* Decide the category of a type exactly as to_jsonb() does */
static void
CategorizeType(JsonTypeInfo *info)
{
	Oid			typid = getBaseType(info->typid);
	Oid			outfunc;
	bool		isvarlena;

	info->basetypid = typid;
	info->typlen = get_typlen(typid);
	getTypeOutputInfo(info->typid, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &info->outfunc, TypeInfoContext);
	info->elemtype = InvalidOid;

	switch (typid)
	{
		case BOOLOID:
			info->category = JSONCAT_BOOL;
			return;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			info->category = JSONCAT_NUMERIC;
			return;
		case DATEOID:
			info->category = JSONCAT_DATE;
			return;
		case TIMESTAMPOID:
			info->category = JSONCAT_TIMESTAMP;
			return;
		case TIMESTAMPTZOID:
			info->category = JSONCAT_TIMESTAMPTZ;
			return;
		case JSONOID:
			info->category = JSONCAT_JSON;
			return;
		case JSONBOID:
			info->category = JSONCAT_JSONB;
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			info->category = JSONCAT_TEXT;
			return;
		default:
			break;
	}

	info->elemtype = get_element_type(typid);
	if (OidIsValid(info->elemtype))
	{
		info->category = JSONCAT_ARRAY;
		get_typlenbyvalalign(info->elemtype, &info->elmlen, &info->elmbyval,
							 &info->elmalign);
		return;
	}
	if (type_is_rowtype(typid))
	{
		info->category = JSONCAT_COMPOSITE;
		return;
	}
	info->category = JSONCAT_OTHER;
	/* user-defined types with a superuser's cast to json use it, as to_jsonb does */
	if (typid >= FirstNormalObjectId)
	{
		Oid			castfunc;

		if (find_coercion_pathway(JSONOID, typid, COERCION_EXPLICIT,
								  &castfunc) == COERCION_PATH_FUNC &&
			OidIsValid(castfunc) && CastFunctionTrusted(castfunc))
		{
			info->category = JSONCAT_JSONCAST;
			fmgr_info_cxt(castfunc, &info->castfunc, TypeInfoContext);
		}
	}
}

/* Return the cached JSON facts of a type, refreshing stale entries */
JsonTypeInfo *
DocumentTypeInfo(Oid typid)
{
	JsonTypeInfo *info;
	bool		found;

	if (TypeInfoHash == NULL)
		TypeInfoHashInit();
	info = hash_search(TypeInfoHash, &typid, HASH_ENTER, &found);
	if (!found || !info->valid)
	{
		info->valid = false;
		CategorizeType(info);
		info->valid = true;
	}
	return info;
}

/* Whether a column's values can be stored out of line (and so be "unchanged TOAST") */
static bool
ColumnIsToastable(Form_pg_attribute att)
{
	return att->attlen == -1 && att->attstorage != TYPSTORAGE_PLAIN;
}

/* Pre-render the JSON keys and look up the types of a relation's columns */
DocumentShape *
DocumentShapeBuild(TupleDesc desc)
{
	DocumentShape *shape = palloc(sizeof(DocumentShape));
	int			i;

	shape->natts = desc->natts;
	shape->columns = palloc0(sizeof(DocumentColumn) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		DocumentColumn *col = &shape->columns[i];
		StringInfoData key;

		if (att->attisdropped || strcmp(NameStr(att->attname), "id") == 0)
		{
			col->skip = true;
			if (att->attisdropped)
				continue;
		}
		col->toastable = ColumnIsToastable(att);
		col->name = pstrdup(NameStr(att->attname));
		initStringInfo(&key);
		escape_json(&key, NameStr(att->attname));
		appendStringInfoChar(&key, ':');
		col->key = key.data;
		col->key_len = key.len;
		col->type = DocumentTypeInfo(att->atttypid);
	}
	return shape;
}

/* A numeric's text is a JSON number unless it is NaN or +-Infinity (as to_jsonb) */
static void
AppendNumeric(StringInfo out, const char *text)
{
	if (strpbrk(text, "Nn") != NULL)
		escape_json(out, text);
	else
		appendStringInfoString(out, text);
}

/*
 * A text, varchar or bpchar value as a JSON string: their output functions
 * only copy the bytes, so escape them in place (no copy, no strlen)
 */
static void
AppendText(StringInfo out, Datum value)
{
	struct varlena *text = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value));

	CompatEscapeJsonLen(out, VARDATA_ANY(text), VARSIZE_ANY_EXHDR(text));
	if ((Pointer) text != DatumGetPointer(value))
		pfree(text);
}

static void AppendArray(StringInfo out, Datum value, JsonTypeInfo *type);
static void AppendComposite(StringInfo out, Datum value);
static void AppendRowColumns(StringInfo out, DocumentShape *shape, Datum *values,
							 bool *nulls);

/* Stop building the current document, saying why (the first reason wins) */
static void
DocumentStop(const char *problem)
{
	if (DocumentProblem == NULL)
		DocumentProblem = pstrdup(problem);
}

/* Stop when the document has passed its limit */
static inline void
CheckDocumentLength(StringInfo out)
{
	if (unlikely(out->len > DocumentMaxLen) && DocumentProblem == NULL)
		DocumentProblem = pstrdup("its JSON passed the document size limit");
}

/*
 * Whether a value's stored size alone shows it cannot fit in the room left,
 * checked before it is detoasted or rendered: text and json render to at
 * least their bytes, jsonb, arrays and composites to at least a quarter
 * (small numbers), other types (geometry, points: binary doubles, short text)
 * to at least a sixteenth. Past this check the rendered length is checked.
 */
static inline bool
ValueCannotFit(StringInfo out, Datum value, JsonTypeInfo *type)
{
	Pointer		p = DatumGetPointer(value);
	Size		raw;
	Size		room;

	if (type->typlen != -1)
		return false;
	/* a plain value in the row (not compressed, not a pointer): its size is in its header */
	if (VARATT_IS_4B_U(p) || (VARATT_IS_1B(p) && !VARATT_IS_1B_E(p)))
		raw = VARSIZE_ANY_EXHDR(p);
	else
		raw = toast_raw_datum_size(value) - VARHDRSZ;
	/* the common case: a small value, far from the limit */
	if (raw < 1024 && out->len < DocumentMaxLen - 16 * 1024)
		return false;
	room = out->len < DocumentMaxLen ? DocumentMaxLen - out->len : 0;
	switch (type->category)
	{
		case JSONCAT_TEXT:
		case JSONCAT_JSON:
			return raw > room;
		case JSONCAT_ARRAY:
		case JSONCAT_COMPOSITE:
		case JSONCAT_JSONB:
			return raw / 4 > room;
		default:
			return raw / 16 > room;
	}
}

/* Errors that say nothing about the value: cancel, shutdown, out of resources */
static bool
ErrorIsAboutValue(int sqlerrcode)
{
	return sqlerrcode != ERRCODE_QUERY_CANCELED &&
		ERRCODE_TO_CATEGORY(sqlerrcode) != ERRCODE_INSUFFICIENT_RESOURCES &&
		ERRCODE_TO_CATEGORY(sqlerrcode) != ERRCODE_OPERATOR_INTERVENTION &&
		ERRCODE_TO_CATEGORY(sqlerrcode) != ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/* A cast to json to run: the value in, its JSON text out */
typedef struct CastCall
{
	Datum		value;
	JsonTypeInfo *type;
	char	   *json;
} CastCall;

/* Subtransaction step: call the cast */
static void
CastStep(void *arg)
{
	CastCall   *c = arg;

	c->json = TextDatumGetCString(FunctionCall1(&c->type->castfunc, c->value));
}

/*
 * A cast to json, in a subtransaction: an error about the value (even a
 * trusted function can refuse one) stops the document with the reason
 * instead of the worker; a cancel or lack of memory is raised as it is.
 */
static void
AppendJsonCast(StringInfo out, Datum value, JsonTypeInfo *type)
{
	CastCall	c = {value, type, NULL};
	ErrorData  *edata = RunInSubtransaction(CastStep, &c);

	if (edata != NULL)
	{
		if (!ErrorIsAboutValue(edata->sqlerrcode))
			ReThrowError(edata);
		DocumentStop(psprintf("the cast of type %s to json failed: %s",
							  format_type_be(type->typid), edata->message));
		FreeErrorData(edata);
		return;
	}
	if (strlen(c.json) > (Size) Max(DocumentMaxLen - out->len, 0))
		DocumentStop("its cast to json returned more than the size limit leaves room for");
	else
		appendStringInfoString(out, c.json);
}

/* The text of an output function, escaped, unless it alone passes the limit */
static void
AppendOutputText(StringInfo out, const char *text)
{
	size_t		len = strlen(text);

	if (DocumentMaxLen != INT_MAX && len > (size_t) Max(DocumentMaxLen - out->len, 0))
	{
		DocumentStop(psprintf("a value's text has %zu bytes, more than the size limit leaves room for", len));
		return;
	}
	CompatEscapeJsonLen(out, text, len);
}

/* Append one value as JSON, the way to_jsonb renders it */
void
DocumentAppendValue(StringInfo out, Datum value, bool isnull, JsonTypeInfo *type)
{
	char		buf[MAXDATELEN + 1];
	char	   *json;

	if (unlikely(DocumentProblem != NULL))
		return;
	if (isnull)
	{
		appendStringInfoString(out, "null");
		return;
	}
	if (unlikely(ValueCannotFit(out, value, type)))
	{
		DocumentStop(psprintf("a value of type %s has %zu bytes, more than the size limit leaves room for",
							  format_type_be(type->typid),
							  (Size) (toast_raw_datum_size(value) - VARHDRSZ)));
		return;
	}
	switch (type->category)
	{
		case JSONCAT_BOOL:
			appendStringInfoString(out, DatumGetBool(value) ? "true" : "false");
			break;
		case JSONCAT_NUMERIC:
			AppendNumeric(out, OutputFunctionCall(&type->outfunc, value));
			break;
		case JSONCAT_DATE:
			JsonEncodeDateTime(buf, value, DATEOID, NULL);
			CompatEscapeJsonLen(out, buf, strlen(buf));
			break;
		case JSONCAT_TIMESTAMP:
			JsonEncodeDateTime(buf, value, TIMESTAMPOID, NULL);
			CompatEscapeJsonLen(out, buf, strlen(buf));
			break;
		case JSONCAT_TIMESTAMPTZ:
			JsonEncodeDateTime(buf, value, TIMESTAMPTZOID, NULL);
			CompatEscapeJsonLen(out, buf, strlen(buf));
			break;
		case JSONCAT_JSON:
			appendStringInfoString(out, OutputFunctionCall(&type->outfunc, value));
			break;
		case JSONCAT_JSONB:
			{
				Jsonb	   *jb = DatumGetJsonbP(value);

				JsonbToCString(out, &jb->root, VARSIZE(jb));
				break;
			}
		case JSONCAT_ARRAY:
			AppendArray(out, value, type);
			break;
		case JSONCAT_COMPOSITE:
			AppendComposite(out, value);
			break;
		case JSONCAT_JSONCAST:
			AppendJsonCast(out, value, type);
			break;
		case JSONCAT_TEXT:
			AppendText(out, value);
			break;
		case JSONCAT_OTHER:
			json = OutputFunctionCall(&type->outfunc, value);
			AppendOutputText(out, json);
			pfree(json);
			break;
	}
	CheckDocumentLength(out);
}

/* Arrays with more elements than this are visited one at a time */
#define ARRAY_ITERATE_MIN_ITEMS 1024

/* The elements of an array in order: split at once (values), or visited one at a time (it) */
typedef struct ArrayElements
{
	ArrayIterator it;
	Datum	   *values;
	bool	   *nulls;
	int			next;
} ArrayElements;

/* The next element; false past the last */
static inline bool
NextElement(ArrayElements *e, Datum *value, bool *isnull)
{
	if (e->it != NULL)
		return array_iterate(e->it, value, isnull);
	*value = e->values[e->next];
	*isnull = e->nulls[e->next];
	e->next++;
	return true;
}

/* Append one dimension of an array, recursing into inner dimensions */
static void
AppendArrayDim(StringInfo out, int dim, int ndims, int *dims, ArrayElements *e,
			   JsonTypeInfo *elem)
{
	int			i;

	appendStringInfoChar(out, '[');
	for (i = 0; i < dims[dim] && DocumentProblem == NULL; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		if (dim + 1 == ndims)
		{
			Datum		value;
			bool		isnull;

			if (!NextElement(e, &value, &isnull))
				break;
			DocumentAppendValue(out, value, isnull, elem);
		}
		else
			AppendArrayDim(out, dim + 1, ndims, dims, e, elem);
	}
	appendStringInfoChar(out, ']');
}

/*
 * Append an array as nested JSON arrays, one level per dimension. A large
 * array's elements are visited one at a time (no copy of them all), so
 * building can stop early; a small one is split at once (cheaper).
 */
static void
AppendArray(StringInfo out, Datum value, JsonTypeInfo *type)
{
	ArrayType  *array = DatumGetArrayTypeP(value);
	JsonTypeInfo *elem = DocumentTypeInfo(type->elemtype);
	ArrayElements e = {NULL, NULL, NULL, 0};
	ArrayMetaState meta;
	int			nitems;
	int			count;

	nitems = ARR_NDIM(array) <= 0 ? 0 : ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array));
	if (nitems == 0)
	{
		appendStringInfoString(out, "[]");
		return;
	}
	if (nitems <= ARRAY_ITERATE_MIN_ITEMS)
		deconstruct_array(array, type->elemtype, type->elmlen, type->elmbyval,
						  type->elmalign, &e.values, &e.nulls, &count);
	else
	{
		meta.element_type = type->elemtype;
		meta.typlen = type->elmlen;
		meta.typbyval = type->elmbyval;
		meta.typalign = type->elmalign;
		e.it = array_create_iterator(array, 0, &meta);
	}
	AppendArrayDim(out, 0, ARR_NDIM(array), ARR_DIMS(array), &e, elem);
	if (e.it != NULL)
		array_free_iterator(e.it);
	else
	{
		pfree(e.values);
		pfree(e.nulls);
	}
}

/* Append a composite value as a JSON object keyed by attribute name */
static void
AppendComposite(StringInfo out, Datum value)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(value);
	TupleDesc	desc;
	HeapTupleData tuple;
	bool		first = true;
	int			i;

	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td),
								  HeapTupleHeaderGetTypMod(td));
	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&(tuple.t_self));
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;

	appendStringInfoChar(out, '{');
	for (i = 0; i < desc->natts && DocumentProblem == NULL; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		v;
		bool		isnull;

		if (att->attisdropped)
			continue;
		if (!first)
			appendStringInfoChar(out, ',');
		first = false;
		escape_json(out, NameStr(att->attname));
		appendStringInfoChar(out, ':');
		v = heap_getattr(&tuple, i + 1, desc, &isnull);
		DocumentAppendValue(out, v, isnull, DocumentTypeInfo(att->atttypid));
	}
	appendStringInfoChar(out, '}');
	ReleaseTupleDesc(desc);
}

/*
 * Append one value, stopping once out passes max_len bytes. Returns NULL, or
 * why the value could not be appended (out then holds part of it).
 */
char *
DocumentAppendBounded(StringInfo out, Datum value, bool isnull, JsonTypeInfo *type,
					  int max_len)
{
	char	   *problem;

	DocumentMaxLen = out->len + max_len;
	DocumentProblem = NULL;
	DocumentAppendValue(out, value, isnull, type);
	problem = DocumentProblem;
	DocumentProblem = NULL;
	return problem;
}

/*
 * Append the document of a row: every column, then "id". Building stops once
 * the document passes max_len bytes (out then holds part of it): returns NULL,
 * or why the row cannot become a document.
 */
char *
DocumentAppendRow(StringInfo out, DocumentShape *shape, Datum *values,
				  bool *nulls, const char *id, int max_len)
{
	int			start = out->len;
	char	   *problem;

	DocumentMaxLen = start + max_len;
	DocumentProblem = NULL;
	AppendRowColumns(out, shape, values, nulls);
	problem = DocumentProblem;
	DocumentProblem = NULL;
	if (problem != NULL)
		return problem;
	appendBinaryStringInfo(out, "\"id\":", 5);
	CompatEscapeJsonLen(out, id, strlen(id));
	appendStringInfoCharMacro(out, '}');
	return NULL;
}

/* Append '{' and every column as key:value, each followed by ',' */
static void
AppendRowColumns(StringInfo out, DocumentShape *shape, Datum *values, bool *nulls)
{
	int			i;

	appendStringInfoCharMacro(out, '{');
	for (i = 0; i < shape->natts && DocumentProblem == NULL; i++)
	{
		DocumentColumn *col = &shape->columns[i];

		if (col->skip)
			continue;
		appendBinaryStringInfo(out, col->key, col->key_len);
		DocumentAppendValue(out, values[i], nulls[i], col->type);
		appendStringInfoCharMacro(out, ',');
	}
}

/*
 * The value as text (its type's output function), as used for document ids;
 * NULL when its stored size alone is over max_len bytes (nothing rendered)
 */
char *
DocumentKeyText(Datum value, JsonTypeInfo *type, int max_len)
{
	if (type->typlen == -1 && toast_raw_datum_size(value) - VARHDRSZ > (Size) max_len)
		return NULL;
	return OutputFunctionCall(&type->outfunc, value);
}
