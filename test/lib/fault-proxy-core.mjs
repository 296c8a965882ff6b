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
 * link carries raw ids). Offers are addressed by rid: /offers signs type
 * 'offers' and link '', /offers/{rid} the lowercased rid alone (as the SDKs
 * sign it). Throws URIError on a malformed escape.
 */
export function resourceFromPath(urlPath) {
  const p = String(urlPath).split('?')[0];
  const segs = p.split('/').filter((s) => s.length > 0).map((s) => decodeURIComponent(s));
  if (segs.length === 0) return { resourceType: '', resourceLink: '' };
  if (segs[0] === 'offers' && segs.length === 2) return { resourceType: 'offers', resourceLink: segs[1].toLowerCase() };
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

// ---------------------------------------------------------------------------
// Effective partition keys (reference §6.4) and partition key ranges (§6.6)
// ---------------------------------------------------------------------------

const M64 = (1n << 64n) - 1n;
const rotl64 = (x, r) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M64;
const fmix64 = (k) => {
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & M64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & M64;
  k ^= k >> 33n;
  return k;
};

/** MurmurHash3_x64_128 (Appleby) of bytes -> {h1, h2} as unsigned 64-bit BigInts. */
export function murmur3x64_128(data, seed = 0n) {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
  const c1 = 0x87c37b91114253d5n;
  const c2 = 0x4cf5ad432745937fn;
  let h1 = BigInt(seed) & M64;
  let h2 = h1;
  const nblocks = Math.floor(b.length / 16);
  for (let i = 0; i < nblocks; i++) {
    let k1 = b.readBigUInt64LE(i * 16);
    let k2 = b.readBigUInt64LE(i * 16 + 8);
    k1 = (k1 * c1) & M64; k1 = rotl64(k1, 31); k1 = (k1 * c2) & M64; h1 ^= k1;
    h1 = rotl64(h1, 27); h1 = (h1 + h2) & M64; h1 = (h1 * 5n + 0x52dce729n) & M64;
    k2 = (k2 * c2) & M64; k2 = rotl64(k2, 33); k2 = (k2 * c1) & M64; h2 ^= k2;
    h2 = rotl64(h2, 31); h2 = (h2 + h1) & M64; h2 = (h2 * 5n + 0x38495ab5n) & M64;
  }
  const tail = nblocks * 16;
  const rest = b.length & 15;
  let k1 = 0n;
  let k2 = 0n;
  for (let i = rest; i > 8; i--) k2 ^= BigInt(b[tail + i - 1]) << BigInt(8 * (i - 9));
  if (rest > 8) { k2 = (k2 * c2) & M64; k2 = rotl64(k2, 33); k2 = (k2 * c1) & M64; h2 ^= k2; }
  for (let i = Math.min(rest, 8); i > 0; i--) k1 ^= BigInt(b[tail + i - 1]) << BigInt(8 * (i - 1));
  if (rest > 0) { k1 = (k1 * c1) & M64; k1 = rotl64(k1, 31); k1 = (k1 * c2) & M64; h1 ^= k1; }
  const len = BigInt(b.length);
  h1 ^= len; h2 ^= len;
  h1 = (h1 + h2) & M64; h2 = (h2 + h1) & M64;
  h1 = fmix64(h1); h2 = fmix64(h2);
  h1 = (h1 + h2) & M64; h2 = (h2 + h1) & M64;
  return { h1, h2 };
}

/** MurmurHash3_x86_32 (Appleby) of bytes -> unsigned 32-bit number (hash v1). */
export function murmur3x86_32(data, seed = 0) {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const nblocks = b.length >>> 2;
  const rotl = (x, r) => (x << r) | (x >>> (32 - r));
  for (let i = 0; i < nblocks; i++) {
    let k = b.readUInt32LE(i * 4);
    k = Math.imul(k, c1); k = rotl(k, 15); k = Math.imul(k, c2);
    h ^= k; h = rotl(h, 13); h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const tail = nblocks * 4;
  for (let i = b.length & 3; i > 0; i--) k ^= b[tail + i - 1] << (8 * (i - 1));
  if (b.length & 3) { k = Math.imul(k, c1); k = rotl(k, 15); k = Math.imul(k, c2); h ^= k; }
  h ^= b.length;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const PK_TYPE = Object.freeze({ undefined: 0x00, null: 0x01, false: 0x02, true: 0x03, number: 0x05, string: 0x08 });

/** A partition key component's kind: 'string' | 'number' | 'true' | 'false' | 'null' | 'undefined' ({} or undefined). */
function componentKind(c) {
  if (c === undefined) return 'undefined';
  if (c === null) return 'null';
  if (c === true) return 'true';
  if (c === false) return 'false';
  if (typeof c === 'number') {
    if (!Number.isFinite(c)) throw new Error(`partition key number ${c} is not finite`);
    return 'number';
  }
  if (typeof c === 'string') return 'string';
  if (typeof c === 'object' && !Array.isArray(c) && Object.keys(c).length === 0) return 'undefined';
  throw new Error(`unsupported partition key component ${JSON.stringify(c)}`);
}

const doubleLE = (x) => { const b = Buffer.alloc(8); b.writeDoubleLE(x); return b; };

/** The bytes hash v2 reads for one component: type byte, then LE double / UTF-8 + 0xFF. */
function v2Bytes(c) {
  const kind = componentKind(c);
  const t = Buffer.of(PK_TYPE[kind]);
  if (kind === 'string') return Buffer.concat([t, Buffer.from(c, 'utf8'), Buffer.of(0xff)]);
  if (kind === 'number') return Buffer.concat([t, doubleLE(c)]);
  return t;
}

/** 32 hex chars: the reversed 128-bit hash with its top 2 bits cleared. */
function v2Hex(bytes) {
  const { h1, h2 } = murmur3x64_128(bytes);
  return ((h2 & 0x3fffffffffffffffn).toString(16).padStart(16, '0') + h1.toString(16).padStart(16, '0')).toUpperCase();
}

/** EPK of kind Hash version 2: one hash over all components (32 hex chars; [] -> ""). */
export function epkV2(components) {
  if (components.length === 0) return '';
  return v2Hex(Buffer.concat(components.map(v2Bytes)));
}

/** EPK of kind MultiHash (hierarchical keys): the v2 hash of each component, concatenated. */
export function epkMultiHash(components) {
  return components.map((c) => v2Hex(v2Bytes(c))).join('');
}

/** The order-preserving binary encoding of a number (hash v1's EPK form). */
function v1NumberBytes(x) {
  let u = doubleLE(x).readBigUInt64LE(0);
  if (u < (1n << 63n)) u ^= 1n << 63n;
  else u = (~u + 1n) & M64;
  const out = [0x05, Number(u >> 56n)];
  u = (u << 8n) & M64;
  let first = true;
  let b = 0;
  do {
    if (!first) out.push(b);
    first = false;
    b = Number(u >> 56n) | 0x01;
    u = (u << 7n) & M64;
  } while (u !== 0n);
  out.push(b & 0xfe);
  return Buffer.from(out);
}

/** EPK of kind Hash version 1 (legacy): encode(murmur3_32 of the cut components) || encode(components). */
export function epkV1(components) {
  if (components.length === 0) return '';
  const cut = components.map((c) => (componentKind(c) === 'string' ? c.slice(0, 100) : c));
  const hashed = Buffer.concat(cut.map((c) => {
    const kind = componentKind(c);
    const t = Buffer.of(PK_TYPE[kind]);
    if (kind === 'string') return Buffer.concat([t, Buffer.from(c, 'utf8'), Buffer.of(0x00)]);
    if (kind === 'number') return Buffer.concat([t, doubleLE(c)]);
    return t;
  }));
  const parts = [v1NumberBytes(murmur3x86_32(hashed, 0))];
  for (const c of cut) {
    const kind = componentKind(c);
    if (kind === 'number') parts.push(v1NumberBytes(c));
    else if (kind === 'string') {
      const s = Buffer.from(c, 'utf8');
      const n = s.length <= 100 ? s.length : 101;
      const enc = Buffer.alloc(n + (s.length <= 100 ? 2 : 1));
      enc[0] = 0x08;
      for (let i = 0; i < n; i++) enc[i + 1] = s[i] < 0xff ? s[i] + 1 : s[i];
      parts.push(enc); // a short string keeps its 0x00 terminator (alloc zeroed it)
    } else parts.push(Buffer.of(PK_TYPE[kind]));
  }
  return Buffer.concat(parts).toString('hex').toUpperCase();
}

/**
 * epk(def, pk) -> the effective partition key (uppercase hex) of a partition
 * key value under a container's partitionKey definition {paths, kind, version}.
 * pk: the JSON array text (as in a bulk op's "partitionKey" or the
 * x-ms-documentdb-partitionkey header) or the parsed array.
 * MultiHash -> epkMultiHash; Hash version 2 -> epkV2; Hash version 1 (or no
 * version) -> epkV1. Throws on a value that is not a JSON array of scalars / {}.
 */
export function epk(def, pk) {
  const comps = typeof pk === 'string' ? JSON.parse(pk) : pk;
  if (!Array.isArray(comps)) throw new Error('partition key value must be a JSON array');
  const kind = String(def?.kind ?? 'Hash');
  if (/^multihash$/i.test(kind)) return epkMultiHash(comps);
  if (!/^hash$/i.test(kind)) throw new Error(`unsupported partition key kind '${kind}'`);
  const version = Number(def?.version ?? 1);
  if (version === 2) return epkV2(comps);
  if (version === 1) return epkV1(comps);
  throw new Error(`unsupported partition key version ${version}`);
}

/** Whether two partition key values (JSON array texts or arrays) are the same key (5 == 5.0, {} == undefined). */
export function samePartitionKey(a, b) {
  try {
    const x = typeof a === 'string' ? JSON.parse(a) : a;
    const y = typeof b === 'string' ? JSON.parse(b) : b;
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
    return x.every((c, i) => {
      const k = componentKind(c);
      return k === componentKind(y[i]) && (k === 'string' || k === 'number' ? c === y[i] : true);
    });
  } catch {
    return false;
  }
}

/**
 * The upper end of the hash v2 / MultiHash EPK space: the top 2 bits of a v2
 * hash are always clear, so the first 32 hex chars of every such EPK are below
 * 2^126 ("40000000000000000000000000000000"); the service splits that space.
 */
export const EPK_V2_SPACE = 1n << 126n;

/** A 128-bit boundary as the 32-hex-digit EPK string ("" for 0, "FF" at/after the end). */
export function epkBoundary(x, space = EPK_V2_SPACE) {
  if (x <= 0n) return '';
  if (x >= space) return 'FF';
  return x.toString(16).toUpperCase().padStart(32, '0');
}

/** The numeric value of a boundary ("" -> 0, "FF" -> space, else its first 32 hex chars). */
export function boundaryValue(s, space = EPK_V2_SPACE) {
  if (s === '') return 0n;
  if (s === 'FF') return space;
  return BigInt(`0x${s.slice(0, 32).padEnd(32, '0')}`);
}

/**
 * evenPkRanges(n, {space, firstId}) -> n ranges [{id, minInclusive, maxExclusive,
 * parents: []}] splitting [0, space) evenly (the last one ends at "FF"),
 * ids String(firstId)... . With the default space (2^126) the boundaries fall
 * where hash v2 / MultiHash keys actually are: n=4 -> "", "1000…0", "2000…0",
 * "3000…0", "FF" (32 hex digits each). space = 2n ** 128n gives the literal
 * split of the whole 128-bit space ("4000…0", "8000…0", "C000…0"), under which
 * every v2 key lands in the first quarter.
 */
export function evenPkRanges(n, { space = EPK_V2_SPACE, firstId = 0 } = {}) {
  const N = BigInt(Math.max(1, Math.floor(n)));
  const out = [];
  for (let i = 0n; i < N; i++) {
    out.push({
      id: String(firstId + Number(i)),
      minInclusive: epkBoundary((space * i) / N, space),
      maxExclusive: i === N - 1n ? 'FF' : epkBoundary((space * (i + 1n)) / N, space),
      parents: [],
    });
  }
  return out;
}

/**
 * splitPkRanges(ranges, {space, nextId}) -> each range cut in two at its middle;
 * children get fresh ids from nextId on and list their parent (and its
 * parents) in `parents`, as the service does after a split.
 */
export function splitPkRanges(ranges, { space = EPK_V2_SPACE, nextId } = {}) {
  let id = nextId ?? Math.max(-1, ...ranges.map((r) => Number(r.id)).filter(Number.isFinite)) + 1;
  const out = [];
  for (const r of ranges) {
    const lo = boundaryValue(r.minInclusive, space);
    const hi = boundaryValue(r.maxExclusive, space);
    const mid = epkBoundary((lo + hi) / 2n, space);
    const parents = [...(r.parents || []), r.id];
    out.push({ id: String(id++), minInclusive: r.minInclusive, maxExclusive: mid, parents });
    out.push({ id: String(id++), minInclusive: mid, maxExclusive: r.maxExclusive, parents: [...parents] });
  }
  return out;
}

/** The range of a list holding an EPK ([minInclusive, maxExclusive), ordinal comparison, "FF" ends all), or null. */
export function findPkRange(ranges, key) {
  for (const r of ranges) {
    if (key >= r.minInclusive && (r.maxExclusive === 'FF' || key < r.maxExclusive)) return r;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Offers (provisioned throughput): what GET/POST /offers answers
// ---------------------------------------------------------------------------

/**
 * validateOffers(offers) -> a normalized copy, or throws with what is wrong.
 * Keys: 'db/coll' (a container's dedicated throughput) or 'db' (a database's
 * shared throughput); values {throughput: N} (manual RU/s) or {autoscaleMax: N}.
 */
export function validateOffers(offers) {
  if (!offers || typeof offers !== 'object' || Array.isArray(offers)) throw new Error("offers must be an object {'db' | 'db/coll': {throughput} | {autoscaleMax}}");
  const out = {};
  for (const [k, v] of Object.entries(offers)) {
    const parts = k.split('/');
    if (parts.length > 2 || parts.some((x) => x.length === 0)) throw new Error(`offers: key '${k}' is not 'db' or 'db/coll'`);
    const fields = Object.keys(v && typeof v === 'object' ? v : {});
    if (fields.length !== 1 || !['throughput', 'autoscaleMax'].includes(fields[0])) {
      throw new Error(`offers['${k}'] must be {throughput: N} or {autoscaleMax: N}, not ${JSON.stringify(v)}`);
    }
    const n = v[fields[0]];
    if (!(Number.isInteger(n) && n > 0)) throw new Error(`offers['${k}'].${fields[0]} must be a positive integer, not ${JSON.stringify(n)}`);
    out[k] = { [fields[0]]: n };
  }
  return out;
}

/** The RU/s a request may spend under an offer: the manual throughput, or the autoscale maximum. */
export const offerLimit = (spec) => spec.throughput ?? spec.autoscaleMax;

/** An autoscale offer's current floor, which the service reports as offerThroughput: max/10 rounded up to 100. */
export const autoscaleFloor = (max) => Math.ceil(max / 10 / 100) * 100;

/** A deterministic 4-character offer rid for a resource rid (the service's look alike "3Sr2"). */
export function offerRidFor(resourceRid) {
  return crypto.createHash('sha256').update(`offer:${resourceRid}`).digest('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 4);
}

/**
 * offerDefinition({spec, dbRid, collRid, ts}) -> the offer JSON as
 * the service returns it (offerVersion V2; autoscale adds offerAutopilotSettings
 * and reports its floor as offerThroughput). collRid absent: a database offer.
 */
export function offerDefinition({ spec, dbRid, collRid, ts }) {
  const resourceRid = collRid ?? dbRid;
  const rid = offerRidFor(resourceRid);
  const content = spec.autoscaleMax !== undefined
    ? { offerThroughput: autoscaleFloor(spec.autoscaleMax), offerIsRUPerMinuteThroughputEnabled: false,
      offerAutopilotSettings: { maxThroughput: spec.autoscaleMax, tier: 0, maximumTierThroughput: 0, autoUpgrade: false } }
    : { offerThroughput: spec.throughput, offerIsRUPerMinuteThroughputEnabled: false };
  const etag = crypto.createHash('sha256').update(`${rid}${JSON.stringify(content)}`).digest('hex');
  return {
    resource: collRid ? `dbs/${dbRid}/colls/${collRid}/` : `dbs/${dbRid}/`,
    offerType: 'Invalid',
    offerResourceId: resourceRid,
    offerVersion: 'V2',
    content,
    id: rid,
    _rid: rid,
    _self: `offers/${rid}/`,
    _etag: `"${etag.slice(0, 8)}-${etag.slice(8, 12)}-${etag.slice(12, 16)}-${etag.slice(16, 20)}-${etag.slice(20, 32)}"`,
    _ts: ts,
  };
}

/**
 * The offers a query selects. The proxy does not parse SQL: an offer matches
 * when its offerResourceId equals any string parameter value of the query
 * ({"query": "... WHERE o.offerResourceId = @rid", "parameters": [{"name": "@rid", "value": "<rid>"}]}).
 */
export function offersForQuery(offers, query) {
  const values = new Set((Array.isArray(query?.parameters) ? query.parameters : [])
    .map((p) => p?.value).filter((v) => typeof v === 'string'));
  return offers.filter((o) => values.has(o.offerResourceId));
}

/** The 400 a serverless account answers to any offer read or replace. */
export function serverlessOfferBody(activityId) {
  return {
    code: 'BadRequest',
    message: `Reading or replacing offers is not supported for serverless accounts.\r\nActivityId: ${activityId}, Microsoft.Azure.Documents.Common/2.14.0`,
  };
}

/** The 403 (substatus 5301) an Entra ID principal without readMetadata gets on an offer read. */
export function forbiddenOfferBody(account, principal, activityId) {
  return {
    code: 'Forbidden',
    message: `Request blocked by Auth ${account} : Request is blocked because principal [${principal}] does not have required RBAC permissions ` +
      'to perform action [Microsoft.DocumentDB/databaseAccounts/readMetadata] on resource [/]. Learn more: https://aka.ms/cosmos-native-rbac.' +
      `\r\nActivityId: ${activityId}, Microsoft.Azure.Documents.Common/2.14.0`,
  };
}
