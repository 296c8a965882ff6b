// Child-process entry point of the fault proxy (see fault-proxy.mjs for the
// API): an HTTPS reverse proxy in front of @vercel/cosmosdb-server that makes
// it behave like the real service — signature checking, RU charges, limits,
// atomic batches that really are atomic — and injects scripted or seeded
// faults. Started by fault-proxy.mjs with child_process.fork(); options come as
// one JSON argument {port, host, certFile, keyFile, caFile, target:{host,port},
// key, config, logFile}. Reports {ready:true, port} over IPC once listening and
// answers {cmd, id, args} messages with {reply:true, id, result|error}.
// Exits on SIGTERM/SIGINT or when the parent goes away.
import https from 'node:https';
import { appendFileSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import {
  DEFAULT_LIMITS, DEFAULT_SUBSTATUS, EPK_V2_SPACE, MAX_CLOCK_SKEW_MS, checkAuthorization, epk, errorBody,
  evenPkRanges, findPkRange, forbiddenOfferBody, formatCharge, masterAuthorization, offerDefinition, offerLimit,
  offersForQuery, opId, opType, rngFor, roundRu, ruForOp, samePartitionKey, serverlessOfferBody, splitPkRanges,
  validateOffers, validateOp,
} from './fault-proxy-core.mjs';
import { exitOnStop } from './util.mjs';

const opts = JSON.parse(process.argv[2] || '{}');
const RECORD_CAP = opts.recordCap ?? 100000;

function log(...parts) {
  const line = `${new Date().toISOString()} fault-proxy: ${parts.map((p) => (p instanceof Error ? p.stack : String(p))).join(' ')}\n`;
  if (opts.logFile) { try { appendFileSync(opts.logFile, line); } catch { /* ignore */ } } else process.stderr.write(line);
}

// ---------------------------------------------------------------------------
// Configuration (everything switchable at run time)
// ---------------------------------------------------------------------------

const FAULT_DEFAULTS = {
  throttleRate: 0, // fraction of eligible requests answered 429/3200
  retryAfterMs: 50, // x-ms-retry-after-ms of injected 429s
  ruPerSecond: 0, // RU budget per container per 1 s window (0 = unlimited)
  errorRate: {}, // {status: fraction}, e.g. {503: 0.05, 410: 0.01}
  stallRate: 0, // fraction held stallMs before being forwarded
  stallMs: 5000,
  resetRate: 0, // fraction whose socket is destroyed without an answer (not forwarded)
  truncateRate: 0, // fraction forwarded, then answered with half the body
  opThrottleRate: 0, // bulk only: fraction of ops answered 429 inside a 207 (not forwarded)
  offers: {}, // {'db' | 'db/coll': {throughput} | {autoscaleMax}}: provisioned throughput, read via /offers; sets RU windows
  offersMode: 'normal', // 'normal' | 'serverless' (offer reads 400) | 'forbidden' (offer reads 403/5301)
};
const DEFAULTS = {
  ...FAULT_DEFAULTS,
  seed: 1,
  faultKinds: ['batch', 'bulk'], // request kinds the random faults apply to
  checkAuth: true,
  maxClockSkewMs: MAX_CLOCK_SKEW_MS,
  clockOffsetMs: 0, // the proxy's clock = Date.now() + clockOffsetMs
  atomicMode: 'precheck', // 'precheck' | 'rollback' | 'none' (emulator semantics)
  realPkRanges: true, // pkranges ids as strings, as the real service
  pkRanges: 0, // > 0: GET .../pkranges answers that many ranges splitting the EPK space evenly
  pkRangesSpace: 'v2', // 'v2': split [0, 2^126) where v2/MultiHash keys are; 'full': [0, 2^128)
  validateRouting: false, // bulk: every op's EPK must be in the declared range (else 410/1002)
  splitRangesAfter: 0, // > 0: after that many bulk requests to a container its ranges split (N -> 2N)
  responseHeaders: {}, // headers set on every answer, over the real ones (a hostile endpoint)
  ...DEFAULT_LIMITS,
};
const ROUTING_OPTIONS = new Set(['pkRanges', 'pkRangesSpace', 'validateRouting', 'splitRangesAfter']);
const KINDS = new Set(['batch', 'bulk', 'container', 'pkranges', 'offers', 'other']);
const OFFERS_MODES = ['normal', 'serverless', 'forbidden'];

let config = { ...DEFAULTS };
let key = opts.key ?? null;
let aadToken = null;

function applyConfig(partial) {
  const next = { ...config };
  for (const [k, v] of Object.entries(partial || {})) {
    if (!(k in DEFAULTS)) throw new Error(`unknown fault proxy option '${k}'`);
    if (k === 'errorRate') {
      const rates = {};
      for (const [s, r] of Object.entries(v || {})) {
        if (!/^[1-5]\d\d$/.test(s)) throw new Error(`errorRate: '${s}' is not an HTTP status`);
        if (!(Number(r) >= 0 && Number(r) <= 1)) throw new Error(`errorRate[${s}] must be in [0,1]`);
        rates[s] = Number(r);
      }
      next.errorRate = rates;
    } else if (k === 'faultKinds') {
      const kinds = Array.isArray(v) ? v : [v];
      for (const x of kinds) if (!KINDS.has(x)) throw new Error(`faultKinds: unknown kind '${x}'`);
      next.faultKinds = kinds;
    } else if (k === 'pkRangesSpace') {
      if (!['v2', 'full'].includes(v)) throw new Error(`pkRangesSpace: '${v}' (want 'v2' or 'full')`);
      next.pkRangesSpace = v;
    } else if (k === 'validateRouting') {
      next.validateRouting = Boolean(v);
    } else if (k === 'offers') {
      next.offers = validateOffers(v);
    } else if (k === 'offersMode') {
      if (!OFFERS_MODES.includes(v)) throw new Error(`offersMode: '${v}' (want ${OFFERS_MODES.map((m) => `'${m}'`).join(', ')})`);
      next.offersMode = v;
    } else if (k === 'atomicMode') {
      if (!['precheck', 'rollback', 'none'].includes(v)) throw new Error(`atomicMode: '${v}'`);
      next.atomicMode = v;
    } else if (typeof DEFAULTS[k] === 'number') {
      if (!Number.isFinite(Number(v))) throw new Error(`${k} must be a number`);
      if (/Rate$/.test(k) && !(v >= 0 && v <= 1)) throw new Error(`${k} must be in [0,1]`);
      next[k] = Number(v);
    } else next[k] = v;
  }
  if (!(Number.isInteger(next.pkRanges) && next.pkRanges >= 0 && next.pkRanges <= 1024)) throw new Error('pkRanges must be an integer in [0,1024]');
  if (!(Number.isInteger(next.splitRangesAfter) && next.splitRangesAfter >= 0)) throw new Error('splitRangesAfter must be a non-negative integer');
  config = next;
  if ('seed' in (partial || {})) faultSeq = 0;
  if ('offers' in (partial || {})) offersTs = Math.floor(Date.now() / 1000); // the offers' _ts
  // the ranges are rebuilt (deterministically: same ids) and the split counters restart
  if (Object.keys(partial || {}).some((k) => ROUTING_OPTIONS.has(k))) rangeStates.clear();
  return config;
}

// ---------------------------------------------------------------------------
// State: scripted faults, budgets, locks, ledger, request records
// ---------------------------------------------------------------------------

let faultSeq = 0; // requests eligible for random faults since the seed was set
let offersTs = Math.floor(Date.now() / 1000); // when the offers were last set
let reqSeq = 0;
let failQueue = []; // [{remaining, fault}]
const containerStatus = new Map(); // 'db/coll' -> {status, substatus, message}
const budgets = new Map(); // window key (windowFor) -> {window, used}
const locks = new Map(); // 'db/coll' -> RWLock
const rangeStates = new Map(); // 'db/coll' -> partition key ranges the proxy answers and checks (rangeStateFor)
const containerDefs = new Map(); // 'db/coll' -> the container's partitionKey definition (read once)

function newLedger() {
  return {
    requests: 0, writeRequests: 0, ops: 0, upserts: 0, deletes: 0, deletesNotFound: 0, ru: 0,
    throttled: 0, opsThrottled: 0, failedInjected: 0, unauthorized: 0, stalls: 0, resets: 0,
    truncated: 0, unacknowledged: 0, opsUnacknowledged: 0, ruUnacknowledged: 0, rollbacks: 0,
    atomicViolations: 0, upstreamErrors: 0, connections: 0,
    misrouted: 0, rangeGone: 0, misroutedStale: 0, pkMismatch: 0, splits: 0,
    byStatus: {}, opsByStatus: {}, byKind: {},
  };
}
let ledger = newLedger();
let records = [];
let recordsDropped = 0;

/** A FIFO readers/writer lock: batches share it, atomic batches that snapshot hold it alone. */
class RWLock {
  constructor() { this.readers = 0; this.writer = false; this.queue = []; }
  acquire(exclusive) {
    return new Promise((resolve) => { this.queue.push({ exclusive, resolve }); this.pump(); });
  }
  pump() {
    while (this.queue.length) {
      const head = this.queue[0];
      if (head.exclusive) {
        if (this.readers > 0 || this.writer) return;
        this.writer = true;
        this.queue.shift();
        head.resolve(() => { this.writer = false; this.pump(); });
        return;
      }
      if (this.writer) return;
      this.readers++;
      this.queue.shift();
      head.resolve(() => { this.readers--; this.pump(); });
    }
  }
}
const lockFor = (k) => { if (!locks.has(k)) locks.set(k, new RWLock()); return locks.get(k); };

// ---------------------------------------------------------------------------
// Upstream (the emulator)
// ---------------------------------------------------------------------------

const ca = readFileSync(opts.caFile);
const upstreamAgent = new https.Agent({ ca, keepAlive: true, maxSockets: 64 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'expect', 'host', 'content-length']);

function upstream(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const h = {};
    for (const [k, v] of Object.entries(headers)) if (!HOP.has(k.toLowerCase())) h[k] = v;
    h.host = `127.0.0.1:${opts.target.port}`;
    if (body && body.length) h['content-length'] = String(body.length);
    const r = https.request({
      host: opts.target.host || '127.0.0.1', port: opts.target.port, servername: 'localhost',
      method, path, headers: h, agent: upstreamAgent,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('upstream response aborted')));
    });
    r.on('error', reject);
    r.end(body && body.length ? body : undefined);
  });
}

const batchHeaders = (base, extra = {}) => ({
  'content-type': 'application/json', 'x-ms-version': base['x-ms-version'] || '2020-07-15',
  'x-ms-cosmos-is-batch-request': 'True', ...extra,
});

async function upstreamBatch(path, base, ops, { atomic, continueOnError, headerPk }) {
  const extra = { 'x-ms-cosmos-batch-atomic': atomic ? 'True' : 'False', 'x-ms-cosmos-batch-continue-on-error': continueOnError ? 'True' : 'False' };
  if (headerPk) extra['x-ms-documentdb-partitionkey'] = headerPk;
  const up = await upstream('POST', path, batchHeaders(base, extra), Buffer.from(JSON.stringify(ops)));
  let results = null;
  try { results = JSON.parse(up.body.toString('utf8')); } catch { /* not JSON */ }
  return { up, results: up.status === 200 && Array.isArray(results) && results.length === ops.length ? results : null };
}

// ---------------------------------------------------------------------------
// Partition key ranges and routing (pkRanges, validateRouting, splitRangesAfter)
// ---------------------------------------------------------------------------

const routingActive = () => config.pkRanges > 0 || config.validateRouting || config.splitRangesAfter > 0;
const rangeSpace = () => (config.pkRangesSpace === 'full' ? 1n << 128n : EPK_V2_SPACE);

/**
 * The ranges the proxy answers for a container and checks bulk requests
 * against: pkRanges even ranges (ids "0".."N-1"), or the emulator's single
 * range "0" ["", "FF") when pkRanges is 0; after a scripted split, 2N children
 * with fresh ids. gen counts splits; servedGen is the last generation a client
 * read through GET .../pkranges (-1: none yet).
 */
function rangeStateFor(ckey) {
  let st = rangeStates.get(ckey);
  if (!st) {
    const ranges = config.pkRanges > 0 ? evenPkRanges(config.pkRanges, { space: rangeSpace() })
      : [{ id: '0', minInclusive: '', maxExclusive: 'FF', parents: [] }];
    st = { ranges, gen: 0, servedGen: -1, split: false, bulkSeen: 0, synthetic: config.pkRanges > 0 };
    rangeStates.set(ckey, st);
  }
  return st;
}

/** GET a database (coll null) or container from the emulator, signed by the proxy: its JSON, or null. */
async function upstreamResource(db, coll) {
  const date = new Date().toUTCString();
  const link = coll === null ? `dbs/${db}` : `dbs/${db}/colls/${coll}`;
  const headers = { 'x-ms-date': date, 'x-ms-version': '2020-07-15', accept: 'application/json' };
  if (key) headers.authorization = masterAuthorization(key, 'GET', coll === null ? 'dbs' : 'colls', link, date);
  const up = await upstream('GET', `/${link.split('/').map(encodeURIComponent).join('/')}`, headers);
  if (up.status !== 200) return null;
  try { return JSON.parse(up.body.toString('utf8')); } catch { return null; }
}

/** The container's partitionKey definition, read from the emulator once (null if it cannot be read). */
async function containerDef(db, coll) {
  const ckey = `${db}/${coll}`;
  if (containerDefs.has(ckey)) return containerDefs.get(ckey);
  const def = (await upstreamResource(db, coll))?.partitionKey ?? null;
  if (def) containerDefs.set(ckey, def);
  return def;
}

/**
 * Check the routing of a batch/bulk request; answers it (and returns true)
 * when it is wrong:
 *  - bulk with x-ms-documentdb-partitionkeyrangeid: a range id the container
 *    does not have (any more) -> 410/1002; with validateRouting, an op whose
 *    EPK (from its "partitionKey" and the container's definition) is outside
 *    the declared range -> 410/1002 for the whole request;
 *  - with validateRouting, an atomic batch with an op whose partitionKey is not
 *    the x-ms-documentdb-partitionkey header's -> 400/1001.
 * Counts bulk requests for splitRangesAfter (the k-th is checked against the
 * old ranges; later ones against the children).
 */
async function checkRouting(ctx, ops, { atomic, headerPk }) {
  const { req, rec, info } = ctx;
  const ckey = `${info.db}/${info.coll}`;
  if (atomic) {
    if (!config.validateRouting) return false;
    const bad = ops.findIndex((op) => op && op.partitionKey !== undefined && op.partitionKey !== null
      && !samePartitionKey(op.partitionKey, headerPk));
    if (bad < 0) return false;
    rec.routingFailure = 'pk-mismatch';
    rec.reason = 'pk-mismatch';
    rec.routing = { opIndex: bad, id: opId(ops[bad]), partitionKey: ops[bad].partitionKey, header: headerPk };
    log(`pk mismatch ${ckey}: op ${bad} (id ${JSON.stringify(opId(ops[bad]))}) has partitionKey ${ops[bad].partitionKey}, the header ${headerPk}`);
    sendError(ctx, 400, { substatus: 1001, message: "PartitionKey extracted from document doesn't match the one specified in the header." });
    return true;
  }
  const declared = req.headers['x-ms-documentdb-partitionkeyrangeid'];
  const st = rangeStateFor(ckey);
  // decided on arrival, before anything is awaited: arrival order counts
  st.bulkSeen++;
  const { ranges, gen } = st;
  const stale = st.servedGen < st.gen;
  if (config.splitRangesAfter > 0 && !st.split && st.bulkSeen >= config.splitRangesAfter) {
    st.ranges = splitPkRanges(st.ranges, { space: rangeSpace() });
    st.gen++;
    st.split = true;
    ledger.splits++;
    log(`split ${ckey} after bulk request ${st.bulkSeen}: ${ranges.length} -> ${st.ranges.length} ranges`);
  }
  if (declared === undefined) return false;
  const id = String(declared);
  const range = ranges.find((r) => r.id === id);
  const fail = (what, detail) => {
    rec.routingFailure = what;
    rec.reason = what;
    rec.routing = { range: id, gen, stale, ...detail };
    log(`${what} ${ckey}: request for range ${id} (ranges of generation ${gen}${stale ? ', not yet read by the client' : ''})`
      + (detail.opIndex !== undefined ? `: op ${detail.opIndex} id ${JSON.stringify(detail.id)} partitionKey ${detail.partitionKey} EPK ${detail.epk} belongs to range ${detail.expected}` : ''));
    sendError(ctx, 410, { substatus: 1002, message: `PartitionKeyRangeGone: the partition key range ${id} is not the one of these documents or is gone.` });
    return true;
  };
  if (!range) return fail('range-gone', {});
  if (!config.validateRouting) return false;
  const def = await containerDef(info.db, info.coll);
  if (!def) return false; // no such container: the emulator answers
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    if (!op || typeof op.partitionKey !== 'string') continue; // per-op validation deals with it
    let e;
    try { e = epk(def, op.partitionKey); } catch { continue; }
    if (findPkRange([range], e)) continue;
    const holder = findPkRange(ranges, e);
    return fail('misrouted', { opIndex: i, id: opId(op), partitionKey: op.partitionKey, epk: e, expected: holder ? holder.id : null });
  }
  return false;
}

/** A pkranges answer with the proxy's ranges instead of the emulator's. */
function synthesizePkRanges(parsed, st) {
  const n = st.ranges.length;
  parsed.PartitionKeyRanges = st.ranges.map((r) => ({
    _rid: `${parsed._rid ?? 'rid'}${r.id}`,
    id: config.realPkRanges ? r.id : Number(r.id),
    _etag: `"gen${st.gen}-${r.id}"`,
    minInclusive: r.minInclusive,
    maxExclusive: r.maxExclusive,
    ridPrefix: Number(r.id),
    _self: `pkranges/${r.id}/`,
    throughputFraction: 1 / n,
    status: 'online',
    parents: [...r.parents],
    _ts: Math.floor(Date.now() / 1000),
    _lsn: 1 + st.gen,
  }));
  parsed._count = n;
  return parsed;
}

// ---------------------------------------------------------------------------
// Offers (option offers / offersMode): answered by the proxy, never forwarded
// ---------------------------------------------------------------------------

const OFFER_READ_RU = 2.5; // what an offer read costs on the service
const FORBIDDEN_ACCOUNT = 'localhost'; // the account named in the 403 message
const FORBIDDEN_PRINCIPAL = '7f4c1e2a-0b9d-4c3e-9a51-6d2f8e0b3c47'; // a made-up Entra ID principal

/** The rids of an offer key's resource, asked from the emulator (null if it does not exist). */
async function offerRids(name) {
  const [db, coll = null] = name.split('/');
  const r = await upstreamResource(db, coll);
  if (!r?._rid) return null;
  if (coll === null) return { dbRid: r._rid };
  const dbRid = serviceSelf(r._self ?? '').split('/')[1]; // 'dbs/<dbRid>/colls/<collRid>/'
  return { dbRid, collRid: r._rid };
}

/** Every configured offer whose database/container exists, as the service would list them. */
async function currentOffers() {
  const entries = Object.entries(config.offers);
  const rids = await Promise.all(entries.map(([name]) => offerRids(name)));
  return entries.flatMap(([, spec], i) => (rids[i] ? [offerDefinition({ spec, ...rids[i], ts: offersTs })] : []));
}

/** A feed or query answer: {_rid:'', Offers:[...], _count} with the item count header. */
function sendOfferFeed(ctx, offers, { truncate }) {
  ctx.rec.ru = OFFER_READ_RU;
  send(ctx, 200, { _rid: '', Offers: offers, _count: offers.length }, { 'x-ms-item-count': String(offers.length) }, { truncate });
}

/**
 * GET /offers (read feed), GET /offers/{rid} and POST /offers as a query
 * (x-ms-documentdb-isquery, application/query+json; matched by parameter
 * values, see offersForQuery). offersMode 'serverless' answers 400 and
 * 'forbidden' 403/5301, as the service does; anything else on /offers is 400.
 */
async function answerOffers(ctx, buf, { truncate }) {
  const { req } = ctx;
  if (config.offersMode === 'serverless') return sendError(ctx, 400, { body: serverlessOfferBody(ctx.activityId) });
  if (config.offersMode === 'forbidden') {
    return sendError(ctx, 403, { substatus: 5301, body: forbiddenOfferBody(FORBIDDEN_ACCOUNT, FORBIDDEN_PRINCIPAL, ctx.activityId) });
  }
  const rid = req.url.split('?')[0].split('/').filter(Boolean)[1];
  if (req.method === 'GET' && rid === undefined) return sendOfferFeed(ctx, await currentOffers(), { truncate });
  if (req.method === 'GET') {
    const offer = (await currentOffers()).find((o) => o.id === rid);
    if (!offer) return sendError(ctx, 404, { message: `Offer ${rid} does not exist.` });
    ctx.rec.ru = OFFER_READ_RU;
    return send(ctx, 200, offer, {}, { truncate });
  }
  const isQuery = isTrue(req.headers['x-ms-documentdb-isquery']) && /query\+json/.test(req.headers['content-type'] || '');
  if (req.method === 'POST' && rid === undefined && isQuery) {
    let query;
    try { query = JSON.parse(buf.toString('utf8')); } catch { query = null; }
    if (!query || typeof query.query !== 'string') return sendError(ctx, 400, { message: 'The query body must be {"query": string, "parameters": [...]}.' });
    return sendOfferFeed(ctx, offersForQuery(await currentOffers(), query), { truncate });
  }
  return sendError(ctx, 400, { message: 'fault proxy: offers can only be read here (GET /offers, GET /offers/{rid}, POST /offers as a query); set the offers option instead.' });
}

// ---------------------------------------------------------------------------
// Answering
// ---------------------------------------------------------------------------

function destroySocket(sock) {
  if (!sock || sock.destroyed) return;
  try { sock.resetAndDestroy(); } catch { sock.destroy(); }
}

/** Send an answer; with truncate, declare the full length, send half, cut the connection. */
function send(ctx, status, body, headers = {}, { truncate = false } = {}) {
  const { res, rec } = ctx;
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  rec.status = status;
  if (res.destroyed || res.headersSent) return;
  const h = {
    'content-type': 'application/json',
    'x-ms-activity-id': ctx.activityId,
    'x-ms-request-charge': formatCharge(rec.ru),
    ...headers,
    ...config.responseHeaders,
    'content-length': String(buf.length),
  };
  res.writeHead(status, h);
  if (truncate) {
    rec.cut = true;
    const half = buf.subarray(0, Math.floor(buf.length / 2));
    if (half.length === 0) { destroySocket(res.socket); return; }
    res.write(half, () => setImmediate(() => res.socket?.destroy()));
    return;
  }
  res.end(buf);
}

function sendError(ctx, status, { substatus, retryAfterMs, message, body } = {}) {
  const h = {};
  const sub = substatus ?? DEFAULT_SUBSTATUS[status];
  if (sub !== undefined && sub !== null) h['x-ms-substatus'] = String(sub);
  if (retryAfterMs !== undefined && retryAfterMs !== null) h['x-ms-retry-after-ms'] = String(Math.max(0, Math.round(retryAfterMs)));
  ctx.rec.ru = 0;
  send(ctx, status, body ?? errorBody(status, { message, activityId: ctx.activityId }), h);
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

const isTrue = (v) => /^true$/i.test(String(v ?? '').trim());

function classify(method, path, headers) {
  let segs;
  try { segs = path.split('/').filter(Boolean).map(decodeURIComponent); } catch { segs = []; }
  const out = { kind: 'other', db: null, coll: null, dbRead: false };
  if (segs[0] === 'offers' && segs.length <= 2) out.kind = 'offers';
  if (segs[0] === 'dbs' && segs.length >= 2) out.db = segs[1];
  out.dbRead = out.db !== null && segs.length === 2 && method === 'GET';
  if (out.db !== null && segs[2] === 'colls' && segs.length >= 4) out.coll = segs[3];
  if (out.coll !== null) {
    if (segs.length === 4 && method === 'GET') out.kind = 'container';
    else if (segs.length === 5 && segs[4] === 'pkranges' && method === 'GET') out.kind = 'pkranges';
    else if (segs.length === 5 && segs[4] === 'docs' && method === 'POST' && isTrue(headers['x-ms-cosmos-is-batch-request'])
      && !isTrue(headers['x-ms-documentdb-isquery']) && !/query\+json/.test(headers['content-type'] || '')
      && !isTrue(headers['x-ms-documentdb-is-upsert'])) {
      out.kind = isTrue(headers['x-ms-cosmos-batch-atomic']) ? 'batch' : 'bulk';
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The request pipeline
// ---------------------------------------------------------------------------

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let length = 0;
    req.on('data', (c) => { length += c.length; if (length <= limit) chunks.push(c); });
    req.on('end', () => resolve({ buf: length <= limit ? Buffer.concat(chunks) : null, length }));
    req.on('error', reject);
    req.on('close', () => { if (!req.complete) reject(new Error('client aborted the request')); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Pick the scripted or random fault of a request (decided on arrival, in arrival order). */
function pickFault(kind) {
  if ((kind === 'batch' || kind === 'bulk') && failQueue.length) {
    const f = failQueue[0];
    if (!f.kinds || f.kinds.includes(kind)) {
      if (--f.remaining <= 0) failQueue.shift();
      return { ...f.fault, source: 'failNext' };
    }
  }
  if (!config.faultKinds.includes(kind)) return null;
  const n = ++faultSeq;
  const rnd = rngFor(config.seed, n);
  // always draw all five numbers so that one rate does not shift the others
  const [uReset, uThrottle, uError, uStall, uTruncate] = [rnd(), rnd(), rnd(), rnd(), rnd()];
  const fault = { n, source: 'random' };
  if (uReset < config.resetRate) return { ...fault, fault: 'reset' };
  if (uThrottle < config.throttleRate) return { ...fault, status: 429, retryAfterMs: config.retryAfterMs };
  let acc = 0;
  for (const s of Object.keys(config.errorRate).sort()) {
    acc += config.errorRate[s];
    if (uError < acc) return { ...fault, status: Number(s) };
  }
  const out = { ...fault };
  if (uStall < config.stallRate) out.stallMs = config.stallMs;
  if (uTruncate < config.truncateRate) out.truncate = true;
  return out;
}

async function handle(req, res) {
  const t0 = performance.now();
  const path = req.url.split('?')[0];
  const info = classify(req.method, path, req.headers);
  const rec = { seq: ++reqSeq, at: Date.now(), method: req.method, path, kind: info.kind, agent: req.headers['user-agent'] ?? '', ops: 0, status: 0, ru: 0 };
  const ctx = { req, res, rec, info, activityId: req.headers['x-ms-activity-id'] || randomUUID(), opResults: null };
  if (req.headers['x-ms-documentdb-partitionkeyrangeid'] !== undefined) rec.pkrangeId = String(req.headers['x-ms-documentdb-partitionkeyrangeid']);
  if (req.headers['x-ms-documentdb-partitionkey'] !== undefined) rec.partitionKey = String(req.headers['x-ms-documentdb-partitionkey']);
  const closed = new Promise((resolve) => res.once('close', resolve));
  // decided on arrival, from the headers alone, in arrival order: a request
  // that fails authorization or hits a scripted container status consumes no
  // scripted or random fault
  const auth = config.checkAuth ? checkAuthorization({ method: req.method, path: req.url, headers: req.headers },
    { key, aadToken, now: Date.now() + config.clockOffsetMs, maxClockSkewMs: config.maxClockSkewMs }) : { ok: true };
  const cs = auth.ok && info.coll !== null ? containerStatus.get(`${info.db}/${info.coll}`) : undefined;
  const fault = auth.ok && !cs ? pickFault(info.kind) : null;
  try {
    await pipeline(ctx, { auth, cs, fault });
  } catch (err) {
    if (!rec.error) { log('request failed:', req.method, path, err); rec.error = String(err.message || err); }
    if (!res.headersSent && !res.destroyed) {
      if (rec.upstreamError) destroySocket(req.socket); // mirror the emulator's transport failure
      else sendError(ctx, 500, { message: `fault proxy: ${err.message}` });
    }
  }
  await closed;
  rec.durationMs = Math.round((performance.now() - t0) * 10) / 10;
  rec.acknowledged = res.writableFinished && !rec.cut;
  account(ctx);
}

async function pipeline(ctx, { auth, cs, fault }) {
  const { req, rec, info } = ctx;
  const write = info.kind === 'batch' || info.kind === 'bulk';
  const body = await readBody(req, write ? config.maxRequestBytes : 64 * 1024 * 1024);
  if (body.buf === null && !write) throw new Error('request body too large for the proxy');
  if (write && body.buf) {
    try { ctx.ops = JSON.parse(body.buf.toString('utf8')); } catch { ctx.ops = undefined; }
    if (Array.isArray(ctx.ops)) rec.ops = ctx.ops.length;
  }

  // 1. authorization, as the service checks it
  if (!auth.ok) {
    rec.authFailure = auth.reason;
    ctx.rec.ru = 0;
    send(ctx, 401, { code: 'Unauthorized', message: `${auth.message}\r\nActivityId: ${ctx.activityId}, Microsoft.Azure.Documents.Common/2.14.0` });
    return;
  }

  // 2. a container scripted to fail (404 missing, 403 forbidden, ...)
  if (cs) {
    rec.injected = String(cs.status);
    rec.reason = 'container';
    sendError(ctx, cs.status, { substatus: cs.substatus, retryAfterMs: cs.retryAfterMs, message: cs.message, body: cs.body });
    return;
  }

  // 3. scripted / random faults decided on arrival
  if (fault?.fault === 'reset') {
    rec.injected = 'reset';
    rec.reason = fault.source;
    destroySocket(req.socket);
    return;
  }
  if (fault?.status) {
    rec.injected = String(fault.status);
    rec.reason = fault.source === 'failNext' ? 'failNext' : fault.status === 429 ? 'throttleRate' : 'errorRate';
    sendError(ctx, fault.status, {
      substatus: fault.substatus, message: fault.message, body: fault.body,
      retryAfterMs: fault.retryAfterMs ?? (fault.status === 429 ? config.retryAfterMs : undefined),
    });
    return;
  }
  if (fault?.stallMs) {
    rec.injected = 'stall';
    rec.reason = fault.source;
    rec.stalledMs = fault.stallMs;
    await sleep(fault.stallMs);
  }
  const truncate = Boolean(fault?.truncate);
  if (truncate) { rec.injected = 'truncate'; rec.reason = fault.source; }

  // 4. the request itself (offers are the proxy's: the emulator has none)
  if (write) await handleBatch(ctx, body, { truncate, faultN: fault?.n });
  else if (info.kind === 'offers') await answerOffers(ctx, body.buf, { truncate });
  else await passThrough(ctx, body.buf, { truncate });
}

async function passThrough(ctx, buf, { truncate }) {
  const { req, rec, info } = ctx;
  let up;
  try {
    up = await upstream(req.method, req.url, req.headers, buf);
  } catch (err) {
    rec.upstreamError = true;
    rec.error = `upstream: ${err.code || err.message}`;
    throw err;
  }
  let out = up.body;
  const headers = {};
  for (const [k, v] of Object.entries(up.headers)) {
    if (!HOP.has(k) && k !== 'content-location' && k !== 'date' && k !== 'x-ms-activity-id' && k !== 'x-ms-request-charge') headers[k] = v;
  }
  rec.ru = Number(up.headers['x-ms-request-charge']) || 0;
  let parsed;
  const ranges = info.kind === 'pkranges' && up.status === 200 && routingActive() ? rangeStateFor(`${info.db}/${info.coll}`) : null;
  const selfShaped = up.status === 200 && (info.kind === 'container' || info.dbRead);
  if (up.status >= 400 || selfShaped || (info.kind === 'pkranges' && (config.realPkRanges || ranges))) {
    try { parsed = JSON.parse(out.toString('utf8')); } catch { parsed = undefined; }
  }
  if (ranges && parsed && Array.isArray(parsed.PartitionKeyRanges)) {
    ranges.servedGen = ranges.gen;
    rec.pkRangesGen = ranges.gen;
    if (ranges.synthetic || ranges.split) {
      out = Buffer.from(JSON.stringify(synthesizePkRanges(parsed, ranges)));
      parsed = null;
    }
  }
  if (selfShaped && parsed && typeof parsed._self === 'string') {
    parsed._self = serviceSelf(parsed._self);
    out = Buffer.from(JSON.stringify(parsed));
  } else if (info.kind === 'pkranges' && config.realPkRanges && parsed && Array.isArray(parsed.PartitionKeyRanges)) {
    for (const r of parsed.PartitionKeyRanges) {
      r.id = String(r.id);
      r.status ??= 'online';
      r.parents ??= [];
    }
    out = Buffer.from(JSON.stringify(parsed));
  } else if (up.status >= 400 && parsed && typeof parsed === 'object' && !parsed.code) {
    // the emulator answers {} or {"message":""}: give its errors the service's shape
    out = Buffer.from(JSON.stringify(errorBody(up.status, { message: parsed.message || undefined, activityId: ctx.activityId })));
  }
  send(ctx, up.status, out, headers, { truncate });
}

/** The emulator's _self ('/dbs/X/colls/Y') in the service's shape ('dbs/X/colls/Y/'), which clients parse for rids. */
const serviceSelf = (self) => `${self.replace(/^\/+|\/+$/g, '')}/`;

/**
 * The 1 s RU window a container's writes count against: its dedicated offer,
 * else its database's shared offer (one window for all its containers), else
 * ruPerSecond per container; null when unlimited. name: the offer key or the
 * container ('db/coll' | 'db'), key: the budgets map key.
 */
function windowFor(db, coll) {
  const own = config.offers[`${db}/${coll}`];
  if (own) return { name: `${db}/${coll}`, key: `offer:${db}/${coll}`, limit: offerLimit(own), reason: 'offer' };
  const shared = config.offers[db];
  if (shared) return { name: db, key: `offer:${db}`, limit: offerLimit(shared), reason: 'offer' };
  if (config.ruPerSecond > 0) return { name: `${db}/${coll}`, key: `ruPerSecond:${db}/${coll}`, limit: config.ruPerSecond, reason: 'ruPerSecond' };
  return null;
}

/** A whole-request failure of a batch/bulk request (no per-op array). */
function failWhole(ctx, status, message, extra = {}) {
  ctx.rec.reason = ctx.rec.reason ?? 'limits';
  sendError(ctx, status, { message, ...extra });
}

const SYSTEM_PROPS = ['_rid', '_self', '_etag', '_ts', '_attachments', '_lsn'];
const stripSystem = (doc) => Object.fromEntries(Object.entries(doc).filter(([k]) => !SYSTEM_PROPS.includes(k)));

async function handleBatch(ctx, body, { truncate, faultN }) {
  const { req, rec, info } = ctx;
  const atomic = info.kind === 'batch';
  const continueOnError = atomic ? false : isTrue(req.headers['x-ms-cosmos-batch-continue-on-error']);
  const headerPk = req.headers['x-ms-documentdb-partitionkey'];
  const ckey = `${info.db}/${info.coll}`;

  // whole-request limits the emulator does not enforce
  if (body.buf === null) return failWhole(ctx, 413, `Request size is too large (${body.length} bytes > ${config.maxRequestBytes}).`);
  const ops = ctx.ops;
  if (!Array.isArray(ops)) return failWhole(ctx, 400, 'The batch request body must be a JSON array of operations.');
  if (ops.length === 0) return failWhole(ctx, 400, 'The batch request did not have any operations to be executed.');
  if (ops.length > config.maxOps) return failWhole(ctx, 400, `The batch request has ${ops.length} operations; at most ${config.maxOps} are allowed.`);
  if (atomic && !headerPk) return failWhole(ctx, 400, 'PartitionKey value must be supplied for a transactional batch (x-ms-documentdb-partitionkey).');

  // routing: the declared range must exist and hold every op; a batch's ops must carry the header's key
  if (routingActive() && await checkRouting(ctx, ops, { atomic, headerPk })) return;

  // per-op validation, and per-op throttling in bulk mode
  const limits = { maxIdBytes: config.maxIdBytes, maxItemBytes: config.maxItemBytes, invalidIdChars: config.invalidIdChars };
  const results = new Array(ops.length).fill(null);
  for (let i = 0; i < ops.length; i++) {
    const v = validateOp(ops[i], { atomic, limits });
    if (v) results[i] = { statusCode: v.statusCode, requestCharge: 0, message: v.message, proxy: 'invalid' };
  }
  if (!atomic && config.opThrottleRate > 0 && faultN) {
    const rnd = rngFor(config.seed, faultN, 1);
    for (let i = 0; i < ops.length; i++) {
      const u = rnd();
      if (!results[i] && u < config.opThrottleRate) {
        results[i] = { statusCode: 429, subStatusCode: 3200, requestCharge: 0, retryAfterMilliseconds: config.retryAfterMs, proxy: 'throttled' };
      }
    }
  }

  // RU budget per offer (or container) and 1 s window (reserved by estimate, settled by the real charge)
  let budget = null;
  let estimate = 0;
  const win = windowFor(info.db, info.coll);
  if (win) {
    rec.window = win.name;
    for (let i = 0; i < ops.length; i++) if (!results[i]) estimate += ruForOp(ops[i]);
    const now = Date.now();
    const w = Math.floor(now / 1000);
    budget = budgets.get(win.key) ?? { window: w, used: 0 };
    budgets.set(win.key, budget);
    if (budget.window !== w) { budget.window = w; budget.used = 0; }
    if (budget.used > 0 && budget.used + estimate > win.limit) {
      rec.injected = '429';
      rec.reason = win.reason;
      rec.ops = ops.length;
      sendError(ctx, 429, { substatus: 3200, retryAfterMs: Math.max(1, (w + 1) * 1000 - now) });
      return;
    }
    budget.used += estimate;
  }

  const answered = atomic && config.atomicMode !== 'none' ? await runAtomic(ctx, ops, results, headerPk, ckey)
    : await runBulk(ctx, ops, results, { atomic, continueOnError, headerPk, ckey });
  if (!answered) return; // the emulator failed the whole request: relayed already

  // charges: the op's RU for successes, the emulator's (0) or ours (0) for failures
  let ru = 0;
  for (let i = 0; i < ops.length; i++) {
    const r = results[i];
    if (r.statusCode >= 200 && r.statusCode < 300) r.requestCharge = ruForOp(ops[i]);
    else r.requestCharge = Number(r.requestCharge) || 0;
    ru += r.requestCharge;
  }
  rec.ru = roundRu(ru);
  if (budget && budget.window === Math.floor(Date.now() / 1000)) budget.used += rec.ru - estimate;
  ctx.opResults = results;
  const anyFailed = results.some((r) => r.statusCode >= 300);
  const out = results.map(({ proxy, message, ...r }) => r);
  send(ctx, anyFailed ? 207 : 200, out, {}, { truncate });
}

/** Fill in the header's partition key on atomic ops that carry none (the emulator needs it per op). */
function withPk(op, headerPk) {
  return op.partitionKey === undefined || op.partitionKey === null ? { ...op, partitionKey: headerPk } : op;
}

const docKey = (op) => `${op.partitionKey}\u0000${opId(op)}`;

async function runBulk(ctx, ops, results, { atomic, continueOnError, headerPk, ckey }) {
  // ops the proxy already answered are not sent; without continue-on-error
  // nothing after the first failure is sent and it all answers 424
  const toSend = [];
  let stop = false;
  for (let i = 0; i < ops.length; i++) {
    if (stop) { results[i] = { statusCode: 424, requestCharge: 0 }; continue; }
    if (results[i]) { if (!continueOnError) stop = true; continue; }
    toSend.push(i);
  }
  if (toSend.length === 0) return true;
  const fwd = toSend.map((i) => (atomic ? withPk(ops[i], headerPk) : ops[i]));
  const release = await lockFor(ckey).acquire(false);
  let r;
  try {
    r = await upstreamBatch(ctx.req.url, ctx.req.headers, fwd, { atomic, continueOnError, headerPk });
  } catch (err) {
    ctx.rec.upstreamError = true;
    ctx.rec.error = `upstream: ${err.code || err.message}`;
    throw err;
  } finally {
    release();
  }
  if (!r.results) return relayWholeFailure(ctx, r.up);
  toSend.forEach((i, j) => { results[i] = r.results[j]; });
  return true;
}

/** The emulator failed the whole request (404 container, 400, 500): relay it as the service would. */
function relayWholeFailure(ctx, up) {
  let parsed;
  try { parsed = JSON.parse(up.body.toString('utf8')); } catch { parsed = undefined; }
  const status = up.status === 200 ? 500 : up.status;
  ctx.rec.emulatorStatus = up.status;
  sendError(ctx, status, { message: parsed?.message || undefined, body: parsed?.code ? parsed : undefined });
  return false;
}

/**
 * Atomic batch with the real service's semantics: any failing op -> HTTP 207,
 * that op's status, 424 for every other op, and nothing applied.
 *  - ops the proxy judges itself (invalid ids, oversized items) fail the batch
 *    before anything is forwarded;
 *  - in 'precheck' mode, batches with ops that can fail on the emulator (any op
 *    but a plain Upsert: Delete/Replace/Read of a missing doc, Create of an
 *    existing one, ifMatch) first read the docs they touch (a bulk Read under an
 *    exclusive per-container lock), replay the batch on that snapshot, and fail
 *    it without forwarding when an op would fail;
 *  - in 'rollback' mode (and as a safety net) the batch is forwarded and, if the
 *    emulator failed an op, the ops applied before it are undone from the
 *    snapshot (restored bodies get new _etag/_ts: that cannot be undone).
 * Plain-Upsert batches are not snapshotted in 'precheck' mode: if the emulator
 * failed one of them anyway (it cannot, short of a 500) it could not roll back.
 */
async function runAtomic(ctx, ops, results, headerPk, ckey) {
  const { rec } = ctx;
  const firstBad = results.findIndex(Boolean);
  if (firstBad >= 0) {
    for (let i = 0; i < ops.length; i++) if (i !== firstBad) results[i] = { statusCode: 424, requestCharge: 0 };
    rec.reason = 'invalid-op';
    return true;
  }
  const fwd = ops.map((op) => withPk(op, headerPk));
  const risky = fwd.some((op) => opType(op) !== 'upsert' || op.ifMatch);
  const snapshotIt = config.atomicMode === 'rollback' || risky;
  const release = await lockFor(ckey).acquire(snapshotIt);
  try {
    let snap = null;
    if (snapshotIt) {
      const keys = [...new Map(fwd.map((op) => [docKey(op), op])).values()];
      const reads = keys.map((op) => ({ operationType: 'Read', id: opId(op), partitionKey: op.partitionKey }));
      const r = await upstreamBatch(ctx.req.url, ctx.req.headers, reads, { atomic: false, continueOnError: true });
      if (!r.results) return relayWholeFailure(ctx, r.up);
      snap = new Map();
      keys.forEach((op, j) => {
        const x = r.results[j];
        snap.set(docKey(op), x.statusCode === 200 ? { exists: true, etag: x.resourceBody?._etag, doc: x.resourceBody } : { exists: false });
      });
      if (config.atomicMode === 'precheck') {
        const fail = simulate(fwd, snap);
        if (fail) {
          for (let i = 0; i < ops.length; i++) results[i] = i === fail.index ? { statusCode: fail.statusCode, requestCharge: 0 } : { statusCode: 424, requestCharge: 0 };
          rec.reason = 'precheck';
          rec.failedOp = { index: fail.index, operationType: ops[fail.index].operationType, id: opId(ops[fail.index]), statusCode: fail.statusCode };
          return true;
        }
      }
    }
    let r;
    try {
      r = await upstreamBatch(ctx.req.url, ctx.req.headers, fwd, { atomic: true, continueOnError: false, headerPk });
    } catch (err) {
      rec.upstreamError = true;
      rec.error = `upstream: ${err.code || err.message}`;
      throw err;
    }
    if (!r.results) return relayWholeFailure(ctx, r.up);
    const k = r.results.findIndex((x) => x.statusCode >= 300);
    if (k < 0) {
      r.results.forEach((x, i) => { results[i] = x; });
      return true;
    }
    for (let i = 0; i < ops.length; i++) results[i] = i === k ? { statusCode: r.results[k].statusCode, requestCharge: 0 } : { statusCode: 424, requestCharge: 0 };
    if (k === 0) return true;
    if (!snap) {
      rec.atomicViolation = true;
      log(`atomic batch ${ctx.req.url}: op ${k} failed on the emulator after ${k} ops were applied; no snapshot to roll back`);
      return true;
    }
    await rollback(ctx, fwd.slice(0, k), snap);
    return true;
  } finally {
    release();
  }
}

/** Replay an atomic batch on a snapshot of the docs it touches: the first op that would fail, or null. */
function simulate(ops, snap) {
  const state = new Map(snap);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    const k = docKey(op);
    const cur = state.get(k) ?? { exists: false };
    const t = opType(op);
    const etagBad = op.ifMatch && cur.exists && cur.etag !== op.ifMatch;
    let status = 0;
    if (t === 'create') status = cur.exists ? 409 : 0;
    else if (t === 'upsert') status = etagBad ? 412 : 0;
    else if (t === 'replace' || t === 'delete' || t === 'read' || t === 'patch') status = !cur.exists ? 404 : etagBad ? 412 : 0;
    if (status) return { index: i, statusCode: status };
    if (t === 'delete') state.set(k, { exists: false });
    else if (t !== 'read') state.set(k, { exists: true, etag: null });
  }
  return null;
}

async function rollback(ctx, applied, snap) {
  const seen = new Set();
  const undo = [];
  for (const op of applied) {
    const k = docKey(op);
    if (seen.has(k) || opType(op) === 'read') continue;
    seen.add(k);
    const before = snap.get(k);
    undo.push(before.exists
      ? { operationType: 'Upsert', partitionKey: op.partitionKey, resourceBody: stripSystem(before.doc) }
      : { operationType: 'Delete', id: opId(op), partitionKey: op.partitionKey });
  }
  ctx.rec.rolledBack = undo.length;
  if (undo.length === 0) return;
  const r = await upstreamBatch(ctx.req.url, ctx.req.headers, undo, { atomic: false, continueOnError: true });
  const bad = r.results ? r.results.filter((x) => x.statusCode >= 300 && x.statusCode !== 404).length : undo.length;
  if (bad) {
    ctx.rec.atomicViolation = true;
    log(`atomic batch ${ctx.req.url}: rollback of ${undo.length} docs failed for ${bad}`);
  }
}

// ---------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------

function account(ctx) {
  const { rec } = ctx;
  const L = ledger;
  L.requests++;
  L.byKind[rec.kind] = (L.byKind[rec.kind] || 0) + 1;
  const statusKey = rec.injected === 'reset' ? 'reset' : rec.injected === 'truncate' ? 'truncated'
    : rec.upstreamError ? 'upstreamError' : String(rec.status || 'none');
  L.byStatus[statusKey] = (L.byStatus[statusKey] || 0) + 1;
  if (rec.status === 401) L.unauthorized++;
  if (rec.status === 429) L.throttled++;
  if (rec.injected && rec.injected !== '429' && rec.injected !== 'stall') L.failedInjected++;
  if (rec.injected === 'stall') L.stalls++;
  if (rec.injected === 'reset') L.resets++;
  if (rec.injected === 'truncate') L.truncated++;
  if (rec.upstreamError) L.upstreamErrors++;
  if (rec.rolledBack) L.rollbacks++;
  if (rec.atomicViolation) L.atomicViolations++;
  if (rec.routingFailure === 'misrouted' || rec.routingFailure === 'range-gone') {
    L.misrouted++;
    if (rec.routingFailure === 'range-gone') L.rangeGone++;
    if (rec.routing?.stale) L.misroutedStale++;
  }
  if (rec.routingFailure === 'pk-mismatch') L.pkMismatch++;
  const write = rec.kind === 'batch' || rec.kind === 'bulk';
  let applied = 0;
  if (write) {
    L.writeRequests++;
    L.ru = roundRu(L.ru + rec.ru);
    if (ctx.opResults) {
      const byStatus = {};
      ctx.opResults.forEach((r, i) => {
        const s = r.statusCode;
        byStatus[s] = (byStatus[s] || 0) + 1;
        L.opsByStatus[s] = (L.opsByStatus[s] || 0) + 1;
        const t = opType(ctx.ops[i]);
        const ok = s >= 200 && s < 300;
        if (ok && (t === 'upsert' || t === 'create' || t === 'replace')) { L.upserts++; applied++; }
        if (ok && t === 'delete') { L.deletes++; applied++; }
        if (s === 404 && t === 'delete') L.deletesNotFound++;
        if (s === 429) L.opsThrottled++;
      });
      L.ops += ctx.opResults.length;
      rec.opStatus = byStatus;
    }
  }
  if (!rec.acknowledged && rec.status && rec.injected !== 'reset' && !rec.upstreamError) {
    L.unacknowledged++;
    L.opsUnacknowledged += applied;
    L.ruUnacknowledged = roundRu(L.ruUnacknowledged + (write ? rec.ru : 0));
  }
  delete rec.cut;
  records.push(rec);
  if (records.length > RECORD_CAP) {
    const drop = Math.ceil(RECORD_CAP / 10);
    records.splice(0, drop);
    recordsDropped += drop;
  }
}

// ---------------------------------------------------------------------------
// Server, down/up, IPC
// ---------------------------------------------------------------------------

const server = https.createServer({
  cert: readFileSync(opts.certFile), key: readFileSync(opts.keyFile), minVersion: 'TLSv1.2',
  keepAliveTimeout: 30000, requestTimeout: 0, headersTimeout: 60000,
});
const sockets = new Set();
let isDown = false;
let port = opts.port || 0;

server.on('connection', (sock) => {
  ledger.connections++;
  sockets.add(sock);
  sock.once('close', () => sockets.delete(sock));
});
server.on('tlsClientError', () => { /* clients that reset or distrust us: not our concern */ });
server.on('clientError', (err, sock) => { try { sock.destroy(); } catch { /* gone */ } });
server.on('request', (req, res) => {
  handle(req, res).catch((err) => log('handler crashed:', err));
});

function listen() {
  return new Promise((resolve, reject) => {
    const onError = (err) => { server.off('listening', onListening); reject(err); };
    const onListening = () => { server.off('error', onError); resolve(server.address().port); };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, opts.host || '127.0.0.1');
  });
}

async function down() {
  if (isDown) return;
  isDown = true;
  await new Promise((resolve) => {
    server.close(() => resolve());
    for (const s of sockets) destroySocket(s);
    sockets.clear();
  });
}

async function up() {
  if (!isDown) return;
  for (let attempt = 0; ; attempt++) {
    try {
      await listen();
      isDown = false;
      return;
    } catch (err) {
      if (err.code !== 'EADDRINUSE' || attempt > 50) throw err;
      await sleep(100);
    }
  }
}

const commands = {
  set: (partial) => ({ ...applyConfig(partial) }),
  clear: () => {
    applyConfig(FAULT_DEFAULTS);
    failQueue = [];
    containerStatus.clear();
    budgets.clear();
    return { ...config };
  },
  config: () => ({ ...config, aadTokenSet: Boolean(aadToken) }),
  failNext: (n, fault = {}) => {
    const f = { ...fault };
    if (f.fault && !['reset', 'truncate', 'stall'].includes(f.fault)) throw new Error(`failNext: unknown fault '${f.fault}'`);
    if (!f.fault && !f.status) f.status = 503;
    if (f.fault === 'stall') f.stallMs = f.stallMs ?? config.stallMs;
    if (f.fault === 'truncate') f.truncate = true;
    const { kinds, ...rest } = f;
    if (n > 0) failQueue.push({ remaining: n, fault: rest, kinds });
    return failQueue.reduce((a, q) => a + q.remaining, 0);
  },
  setStatusForContainer: (db, coll, status, extra = {}) => {
    if (status === null || status === undefined || status === 0) containerStatus.delete(`${db}/${coll}`);
    else containerStatus.set(`${db}/${coll}`, { status: Number(status), ...extra });
    return containerStatus.size;
  },
  setAadToken: (token) => { aadToken = token || null; return Boolean(aadToken); },
  setKey: (k) => { key = k || null; return true; },
  down: () => down(),
  up: () => up(),
  ledger: () => ({ ...ledger, byStatus: { ...ledger.byStatus }, opsByStatus: { ...ledger.opsByStatus }, byKind: { ...ledger.byKind } }),
  requests: ({ since = 0, kind, limit } = {}) => {
    let out = records.filter((r) => r.seq > since && (!kind || r.kind === kind));
    if (limit) out = out.slice(-limit);
    return { records: out, dropped: recordsDropped };
  },
  reset: () => { ledger = newLedger(); records = []; recordsDropped = 0; budgets.clear(); return true; },
};

process.on('message', async (msg) => {
  if (!msg || typeof msg !== 'object' || !msg.cmd) return;
  try {
    const fn = commands[msg.cmd];
    if (!fn) throw new Error(`unknown command ${msg.cmd}`);
    const result = await fn(...(msg.args || []));
    process.send({ reply: true, id: msg.id, result });
  } catch (err) {
    process.send({ reply: true, id: msg.id, error: String(err.message || err) });
  }
});

try {
  applyConfig(opts.config || {});
  port = await listen();
  if (process.send) process.send({ ready: true, port });
  else console.log(`fault proxy listening on https://127.0.0.1:${port}/`);
} catch (err) {
  log('failed to start:', err);
  if (process.send) process.send({ error: String(err.message || err) });
  process.exit(1);
}

exitOnStop(server, sockets);
