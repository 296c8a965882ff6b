// Pure helpers of the fault proxy (fault-proxy.mjs / fault-proxy-server.mjs),
// free of I/O so that tests can use them directly: the master-key signature
// and its checker (as the service does it), the RU formula, the service's
// batch limits and per-op validation, the seeded random numbers, and the
// service's error bodies.
import crypto from 'node:crypto';

/** The service tolerates 15 min of clock skew (and master tokens live 15 min). */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

/**
 * Limits of the real service that @vercel/cosmosdb-server does not enforce.
 * maxRequestBytes: whole request body (-> 413 for the request);
 * maxItemBytes: JSON of one op's resourceBody (-> 413 for that op);
 * maxOps: ops per batch/bulk request (-> 400 for the request);
 * maxIdBytes: UTF-8 bytes of an id (-> 400 for that op);
 * invalidIdChars: an id containing any of them -> 400 for that op.
 */
export const DEFAULT_LIMITS = Object.freeze({
  maxOps: 100,
  maxRequestBytes: 2 * 1024 * 1024,
  maxItemBytes: 2 * 1024 * 1024,
  maxIdBytes: 1023,
  invalidIdChars: '/\\?#',
});

// ---------------------------------------------------------------------------
// Master-key signature (reference §1)
// ---------------------------------------------------------------------------

/** The exact payload the service signs: five newline-terminated fields. */
export function stringToSign(verb, resourceType, resourceLink, date) {
  return `${String(verb).toLowerCase()}\n${String(resourceType).toLowerCase()}\n${resourceLink}\n${String(date).toLowerCase()}\n\n`;
}

/** base64(HMAC-SHA256(base64decode(key), stringToSign(...))) */
export function masterSignature(key, verb, resourceType, resourceLink, date) {
  return crypto.createHmac('sha256', Buffer.from(key, 'base64'))
    .update(stringToSign(verb, resourceType, resourceLink, date), 'utf8').digest('base64');
}

/** The Authorization header value: URL-encoded `type=master&ver=1.0&sig=...` */
export function masterAuthorization(key, verb, resourceType, resourceLink, date) {
  return encodeURIComponent(`type=master&ver=1.0&sig=${masterSignature(key, verb, resourceType, resourceLink, date)}`);
}

/** The Authorization header value for a Microsoft Entra (AAD) token. */
export function aadAuthorization(token) {
  return encodeURIComponent(`type=aad&ver=1.0&sig=${token}`);
}

/**
 * resourceFromPath('/dbs/a/colls/b/docs') -> {resourceType:'docs', resourceLink:'dbs/a/colls/b'}
 * Feed paths (odd number of segments) sign the parent link, point paths the
 * resource itself; '/' signs type '' and link ''. Names are URL-decoded (the
 * link carries raw ids). Throws URIError on a malformed escape.
 */
export function resourceFromPath(urlPath) {
  const p = String(urlPath).split('?')[0];
  const segs = p.split('/').filter((s) => s.length > 0).map((s) => decodeURIComponent(s));
  if (segs.length === 0) return { resourceType: '', resourceLink: '' };
  if (segs.length % 2 === 1) return { resourceType: segs[segs.length - 1], resourceLink: segs.slice(0, -1).join('/') };
  return { resourceType: segs[segs.length - 2], resourceLink: segs.join('/') };
}

const lowerKeys = (h) => Object.fromEntries(Object.entries(h || {}).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v[0] : v]));

/**
 * checkAuthorization({method, path, headers}, {key, aadToken, now, maxClockSkewMs})
 *   -> {ok:true, type:'master'|'aad'} | {ok:false, reason, message, payload?}
 * What the service checks: x-ms-version present, x-ms-date present, parseable
 * and within maxClockSkewMs of `now`, and an Authorization header that is
 * either a master signature recomputed from the verb, the resource type/link
 * derived from the path and the lowercased x-ms-date with `key`, or
 * `type=aad&ver=1.0&sig=<aadToken>` when an AAD token is expected.
 * `payload` (on a bad signature) is the string the server signed, as the real
 * 401 message shows it; it contains no secret.
 */
export function checkAuthorization({ method, path, headers }, { key, aadToken = null, now = Date.now(), maxClockSkewMs = MAX_CLOCK_SKEW_MS } = {}) {
  const h = lowerKeys(headers);
  const fail = (reason, message, extra = {}) => ({ ok: false, reason, message, ...extra });
  if (!h['x-ms-version']) return fail('no-version', "The input authorization token can't serve the request. Required header 'x-ms-version' is missing.");
  const date = h['x-ms-date'];
  if (!date) return fail('no-date', "The input authorization token can't serve the request. Required header 'x-ms-date' is missing.");
  const t = Date.parse(date);
  if (!/GMT$/.test(date) || Number.isNaN(t)) {
    return fail('bad-date', "The input authorization token can't serve the request. The input date header is invalid format. Please pass in RFC 1123 style date format.");
  }
  if (Math.abs(now - t) > maxClockSkewMs) {
    return fail('stale-date', "The input authorization token can't serve the request. The authorization token is not valid at the current time. " +
      `Please create another token and retry (token start time: ${new Date(t).toUTCString()}, current server time: ${new Date(now).toUTCString()}).`);
  }
  const raw = h.authorization;
  if (!raw) return fail('no-authorization', "The input authorization token can't serve the request. Required header 'authorization' is missing.");
  let decoded;
  try { decoded = decodeURIComponent(raw); } catch { decoded = null; }
  const m = decoded && /^type=([^&]*)&ver=([^&]*)&sig=(.*)$/s.exec(decoded);
  if (!m) return fail('malformed-authorization', "The input authorization token can't serve the request. The authorization header is malformed.");
  const [, type, ver, sig] = m;
  if (ver !== '1.0') return fail('bad-version', `The input authorization token can't serve the request. Unsupported token version '${ver}'.`);
  if (type === 'master') {
    let res;
    try { res = resourceFromPath(path); } catch { return fail('bad-path', "The input authorization token can't serve the request. The request path is malformed."); }
    const payload = stringToSign(method, res.resourceType, res.resourceLink, date);
    if (key) {
      const want = Buffer.from(masterSignature(key, method, res.resourceType, res.resourceLink, date));
      const got = Buffer.from(sig);
      if (want.length === got.length && crypto.timingSafeEqual(want, got)) return { ok: true, type };
    }
    return fail('bad-signature', "The input authorization token can't serve the request. The wrong key is being used or the expected payload is not built as per the protocol. " +
      `For more info: https://aka.ms/cosmosdb-tsg-401. Server used the following payload to sign: '${payload}'`, { payload });
  }
  if (type === 'aad') {
    if (aadToken && sig === aadToken) return { ok: true, type };
    return fail('bad-aad-token', "The input authorization token can't serve the request. The AAD token is not valid for this account.");
  }
  return fail('bad-type', `The input authorization token can't serve the request. Unsupported token type '${type}'.`);
}

// ---------------------------------------------------------------------------
// Request Units
// ---------------------------------------------------------------------------

/** UTF-8 bytes of the compact JSON of a value (what the RU formula and the item limit measure). */
export const jsonBytes = (v) => Buffer.byteLength(JSON.stringify(v === undefined ? null : v), 'utf8');

/**
 * ruForOp(op) -> RU charged for one successful batch/bulk op:
 *   Create / Upsert / Replace: 10 RU per started KiB (1024 bytes) of the
 *     compact JSON (JSON.stringify, UTF-8) of op.resourceBody, at least 10
 *     (1..1024 bytes -> 10, 1025..2048 -> 20, ...);
 *   Delete, Patch: 10; Read: 1; anything else: 0.
 * Failed ops (4xx/424/429) are charged 0.
 */
export function ruForOp(op) {
  switch (String(op?.operationType ?? '').toLowerCase()) {
    case 'create':
    case 'upsert':
    case 'replace':
      return 10 * Math.max(1, Math.ceil(jsonBytes(op.resourceBody) / 1024));
    case 'delete':
    case 'patch':
      return 10;
    case 'read':
      return 1;
    default:
      return 0;
  }
}

/** Round to 2 decimals the way the header shows it. */
export const roundRu = (x) => Math.round(x * 100) / 100;
/** The x-ms-request-charge header text, e.g. 30 -> "30.00". */
export const formatCharge = (x) => roundRu(x).toFixed(2);

// ---------------------------------------------------------------------------
// Batch ops: ids, validation
// ---------------------------------------------------------------------------

const WRITES_WITH_BODY = new Set(['create', 'upsert', 'replace']);
const KNOWN_OPS = new Set(['create', 'upsert', 'replace', 'delete', 'read', 'patch']);

export const opType = (op) => String(op?.operationType ?? '').toLowerCase();

/** The id an op addresses: resourceBody.id for Create/Upsert/Replace, op.id otherwise. */
export function opId(op) {
  if (!op || typeof op !== 'object') return undefined;
  return WRITES_WITH_BODY.has(opType(op)) ? op.resourceBody?.id : op.id;
}

/**
 * validateOp(op, {atomic, limits}) -> null when the service would accept it,
 * else the per-op result the service gives: {statusCode: 400|413, message}.
 * Checks: known operationType, an object resourceBody for writes, a string id
 * (non-empty, <= maxIdBytes UTF-8 bytes, none of invalidIdChars), item JSON
 * <= maxItemBytes, and in bulk (non-atomic) mode a per-op partitionKey.
 */
export function validateOp(op, { atomic = false, limits = DEFAULT_LIMITS } = {}) {
  const bad = (statusCode, message) => ({ statusCode, message });
  if (!op || typeof op !== 'object' || Array.isArray(op)) return bad(400, 'The operation is not a JSON object.');
  const t = opType(op);
  if (!KNOWN_OPS.has(t)) return bad(400, `Unknown operationType '${op.operationType}'.`);
  if (WRITES_WITH_BODY.has(t) && (!op.resourceBody || typeof op.resourceBody !== 'object' || Array.isArray(op.resourceBody))) {
    return bad(400, 'The operation has no resourceBody object.');
  }
  const id = opId(op);
  if (typeof id !== 'string' || id.length === 0) return bad(400, "The input content is invalid because the required property, 'id', is missing.");
  if (Buffer.byteLength(id, 'utf8') > limits.maxIdBytes) return bad(400, `The id is longer than ${limits.maxIdBytes} bytes.`);
  for (const c of limits.invalidIdChars) {
    if (id.includes(c)) return bad(400, `The input name '${id.length > 60 ? `${id.slice(0, 60)}...` : id}' is invalid. Ensure to provide a unique non-empty string less than '1024' characters. Ensure to not use the characters: ${JSON.stringify(limits.invalidIdChars)}.`);
  }
  if (!atomic && (op.partitionKey === undefined || op.partitionKey === null)) {
    return bad(400, 'PartitionKey value must be supplied for this operation.');
  }
  if (WRITES_WITH_BODY.has(t) && jsonBytes(op.resourceBody) > limits.maxItemBytes) {
    return bad(413, 'Request size is too large.');
  }
  return null;
}

// ---------------------------------------------------------------------------
// Errors as the service words them
// ---------------------------------------------------------------------------

export const STATUS_CODE_NAMES = Object.freeze({
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 408: 'RequestTimeout',
  409: 'Conflict', 410: 'Gone', 412: 'PreconditionFailed', 413: 'RequestEntityTooLarge',
  424: 'FailedDependency', 429: 'TooManyRequests', 449: 'RetryWith', 500: 'InternalServerError',
  503: 'ServiceUnavailable',
});

/** Substatus sent when a test injects a status without naming one. */
export const DEFAULT_SUBSTATUS = Object.freeze({ 410: 1002, 429: 3200 });

const DEFAULT_MESSAGES = {
  400: 'The request is invalid.',
  403: 'Request blocked by Auth: the principal does not have the required permission.',
  404: 'Resource Not Found. Learn more: https://aka.ms/cosmosdb-tsg-not-found',
  408: 'Request timed out. More info: https://aka.ms/cosmosdb-tsg-request-timeout',
  410: 'The requested resource is no longer available at the server (partition key range gone).',
  413: 'Request size is too large.',
  429: 'Request rate is large. More Request Units may be needed, so no changes were made. Please retry this request later. Learn more: http://aka.ms/cosmosdb-error-429',
  449: 'Conflicting request to resource has been attempted. Retry to avoid conflicts.',
  500: 'Unknown server error occurred when processing this request.',
  503: 'Service is currently unavailable. More info: https://aka.ms/cosmosdb-tsg-service-unavailable',
};

/** The service's error body: {"code":"ServiceUnavailable","message":"Message: {\"Errors\":[...]}\r\nActivityId: ..."} */
export function errorBody(status, { message, activityId } = {}) {
  const text = message ?? DEFAULT_MESSAGES[status] ?? 'The request failed.';
  return {
    code: STATUS_CODE_NAMES[status] ?? String(status),
    message: `Message: ${JSON.stringify({ Errors: [text] })}\r\nActivityId: ${activityId ?? crypto.randomUUID()}, Microsoft.Azure.Documents.Common/2.14.0`,
  };
}

// ---------------------------------------------------------------------------
// Seeded random numbers: one independent stream per (seed, request number)
// ---------------------------------------------------------------------------

function mix32(x) {
  let t = (x + 0x9e3779b9) | 0;
  t = Math.imul(t ^ (t >>> 16), 0x21f0aaad);
  t = Math.imul(t ^ (t >>> 15), 0x735a2d97);
  return (t ^ (t >>> 15)) >>> 0;
}

/** A deterministic generator of floats in [0,1) for request number n of a seed (stream separates uses). */
export function rngFor(seed, n, stream = 0) {
  let a = mix32(mix32(mix32(Number(seed) >>> 0) ^ (n >>> 0)) ^ stream);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
