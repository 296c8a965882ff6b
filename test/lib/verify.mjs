// Compares what a Cosmos DB container holds (read back with the official
// @azure/cosmos SDK, query SELECT * FROM c, system properties stripped) with
// the documents PostgreSQL says it should hold (to_jsonb(row) + "id" as text
// per staging row), and reports missing, stale and extra documents with a
// short diff sample. JSON values must be exactly equal (numbers as numbers,
// object key order ignored, array order significant).
import { cosmosClient } from './emulator.mjs';

export const SYSTEM_PROPERTIES = ['_rid', '_self', '_etag', '_ts', '_attachments', '_lsn'];

/** A copy of a Cosmos document without its system properties. */
export function stripSystem(doc) {
  const out = { ...doc };
  for (const k of SYSTEM_PROPERTIES) delete out[k];
  return out;
}

/** Exact JSON-value equality: same types, numbers by value, objects by key set. */
export function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null) return false;
  if (typeof a !== 'object') return false; // distinct primitives (NaN never occurs in JSON)
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

/** Differences between two documents, as short "key: expected X, got Y" strings (top-level keys). */
export function diffDocs(expected, actual, { max = 6, width = 80 } = {}) {
  const show = (v) => (v === undefined ? '(absent)' : clip(JSON.stringify(v), width));
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort();
  const out = [];
  for (const k of keys) {
    if (!jsonEqual(expected[k], actual[k])) out.push(`${k}: expected ${show(expected[k])}, got ${show(actual[k])}`);
  }
  return out.length > max ? [...out.slice(0, max), `... ${out.length - max} more`] : out;
}

function clip(s, n) { return s.length > n ? `${s.slice(0, n)}...` : s; }

/** The SQL giving the expected documents of a staging table (one jsonb column "doc"). */
export function expectedDocsSql(table, idColumn) {
  const col = `t.${quoteIdent(idColumn)}`;
  return `SELECT to_jsonb(t) || jsonb_build_object('id', ${col}::text) AS doc FROM ${table} t`;
}

function quoteIdent(name) {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/**
 * readContainer({endpoint, caFile, database, container, maxItemCount=100000, client})
 *   -> documents (system properties stripped)
 * Uses a cross-partition query SELECT * FROM c through the official SDK.
 */
export async function readContainer({ endpoint, caFile, database, container, maxItemCount = 100000, client }) {
  const c = client ?? cosmosClient(endpoint, caFile);
  try {
    const it = c.database(database).container(container).items.query('SELECT * FROM c', { maxItemCount });
    const docs = [];
    while (it.hasMoreResults()) {
      const { resources } = await it.fetchNext();
      if (resources) for (const d of resources) docs.push(stripSystem(d));
    }
    return docs;
  } finally {
    if (!client) c.dispose();
  }
}

/**
 * compareDocs(expectedDocs, actualDocs, {sample=5}) -> report (see verifyContainer)
 * Documents are matched by "id". Several actual documents with one id (the
 * same id in different logical partitions): one equal to the expected one
 * counts as present, the others are extra; if none is equal, the first is
 * stale and the others extra.
 */
export function compareDocs(expectedDocs, actualDocs, { sample = 5 } = {}) {
  const expected = new Map();
  const dupExpected = [];
  for (const d of expectedDocs) {
    if (expected.has(d.id)) dupExpected.push(d.id);
    expected.set(d.id, d);
  }
  if (dupExpected.length) throw new Error(`expected documents repeat ids: ${dupExpected.slice(0, 5).join(', ')}`);
  const actual = new Map();
  for (const d of actualDocs) {
    if (!actual.has(d.id)) actual.set(d.id, []);
    actual.get(d.id).push(d);
  }
  const missing = [];
  const stale = [];
  const extra = [];
  for (const [id, exp] of expected) {
    const got = actual.get(id);
    if (!got) { missing.push({ id, expected: exp }); continue; }
    const i = got.findIndex((g) => jsonEqual(exp, g));
    if (i >= 0) {
      got.forEach((g, j) => { if (j !== i) extra.push({ id, actual: g }); });
    } else {
      stale.push({ id, expected: exp, actual: got[0], diff: diffDocs(exp, got[0]) });
      got.slice(1).forEach((g) => extra.push({ id, actual: g }));
    }
  }
  for (const [id, got] of actual) if (!expected.has(id)) for (const g of got) extra.push({ id, actual: g });

  const lines = [];
  for (const m of missing.slice(0, sample)) lines.push(`missing id=${m.id}: ${clip(JSON.stringify(m.expected), 160)}`);
  for (const s of stale.slice(0, sample)) lines.push(`stale id=${s.id}: ${s.diff.join('; ')}`);
  for (const x of extra.slice(0, sample)) lines.push(`extra id=${x.id}: ${clip(JSON.stringify(x.actual), 160)}`);
  const ok = !missing.length && !stale.length && !extra.length;
  const summary = `expected ${expected.size}, container has ${actualDocs.length}: `
    + `${missing.length} missing, ${stale.length} stale, ${extra.length} extra`;
  return {
    ok,
    expectedCount: expected.size,
    actualCount: actualDocs.length,
    missing, stale, extra,
    summary,
    sample: lines.join('\n'),
    toString() { return ok ? summary : `${summary}\n${lines.join('\n')}`; },
  };
}

/**
 * verifyContainer({pg, table, idColumn, expectedSql, endpoint, caFile,
 *                  database, container, sample=5})
 *   -> {ok, expectedCount, actualCount, missing[], stale[], extra[], summary, sample}
 * pg: a PgServer (pg.mjs) or anything with query(sql) -> rows. Expected
 * documents come from expectedSql when given (one column "doc"), else from
 * to_jsonb(t) || {"id": idColumn::text} over `table` (schema-qualify it if
 * needed). missing/stale/extra entries carry {id, expected?, actual?, diff?}.
 * Typical use:  const r = await verifyContainer({...}); assert.ok(r.ok, String(r));
 */
export async function verifyContainer({ pg, table, idColumn, expectedSql, pgDatabase, endpoint, caFile, database, container, client, sample = 5 }) {
  const sql = expectedSql ?? expectedDocsSql(table, idColumn);
  const rows = await pg.query(sql, [], pgDatabase ? { database: pgDatabase } : undefined);
  const expectedDocs = rows.map((r) => (typeof r.doc === 'string' ? JSON.parse(r.doc) : r.doc));
  const actualDocs = await readContainer({ endpoint, caFile, database, container, client });
  return compareDocs(expectedDocs, actualDocs, { sample });
}
