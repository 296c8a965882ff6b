// A "null" Cosmos DB endpoint for benchmarks: it speaks exactly the part of
// the protocol the cosmos_sink worker (and the official SDK's bulk path)
// uses, does no storage work, and answers at once, so a benchmark measures
// the client, not the server:
//   GET /                               -> a database account (the SDK reads it)
//   GET /dbs/{db}                       -> {"id": db}
//   GET /dbs/{db}/colls/{coll}          -> {"id":coll,"partitionKey":{"paths":[..],"kind":"Hash","version":2}}
//   GET /dbs/{db}/colls/{coll}/pkranges -> 1 range ("" .. "FF"), or `ranges` ranges split evenly
//   POST /dbs/{db}/colls/{coll}/docs with x-ms-cosmos-is-batch-request
//                                       -> 200 and one {"statusCode":200|201|204,"requestCharge":N}
//                                          per op, x-ms-request-charge, x-ms-activity-id
// Signatures are not checked. Every op succeeds (a delete answers 204 even if
// the document was never seen). Optionally it keeps the last state of every
// document (partition key + id -> live or deleted) to count live ids at the
// end, and records commit->ack latency: now - Date.parse(doc[latencyField])
// for each upserted document carrying that field.
//
// It runs in its own process (this file is also the child's entry point):
//   const ne = await startNullEndpoint({ certs, ranges: 4, pkPaths: { 'shop/orders': ['/customer_id'] } });
//   ... cosmos_sink.endpoint = ne.endpoint, cosmos_sink.ca_file = ne.caFile
//   await ne.stats()        {requests, batchRequests, bulkRequests, ops, upserts, deletes, bytesIn,
//                            connections, cpuMs, live: {'db/coll': n}, latency: {count, p50, p99, max}}
//   await ne.latencyDocs()  {id:[], written:[], arrived:[]}: each timed document's id, Date.parse(doc[latencyField])
//                           and arrival (ms since the epoch), to join with commit timestamps
//   await ne.reset()        zero the counters, forget documents and latencies
//   await ne.set({track, latencyField})
//   await ne.stop()
// measureCapacity({endpoint, caFile, seconds, concurrency, opsPerRequest, docBytes})
// fires pre-built bulk bodies at it over keep-alive connections and returns
// {opsPerSecond, requestsPerSecond, mbPerSecond, requests, seconds}.
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { exitOnStop } from '../lib/util.mjs';

const self = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------

const live = new Set();
process.once('exit', () => { for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

/**
 * startNullEndpoint({certs:{certFile,keyFile,caFile}, tls=true, port=0, ranges=1,
 *   pkPaths={'db/coll': ['/col']}, defaultPkPaths=['/customer_id'], track=true,
 *   latencyField=null}) -> NullEndpoint
 * With tls=false it serves plain http:// (certs not needed).
 */
export async function startNullEndpoint({ certs, tls = true, port = 0, ranges = 1, pkPaths = {},
  defaultPkPaths = ['/customer_id'], track = true, latencyField = null, timeoutMs = 15000 } = {}) {
  const opts = { port, tls, ranges, pkPaths, defaultPkPaths, track, latencyField,
    certFile: certs?.certFile, keyFile: certs?.keyFile };
  if (tls && (!opts.certFile || !opts.keyFile)) throw new Error('startNullEndpoint: tls needs certs');
  const child = fork(self, ['--child', JSON.stringify(opts)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  live.add(child);
  const exited = new Promise((resolve) => child.once('exit', () => { live.delete(child); resolve(); }));
  const pending = new Map();
  let seq = 0;
  child.on('message', (m) => {
    if (m?.reply && pending.has(m.id)) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p.reject(new Error(m.error)); else p.resolve(m.result);
    }
  });
  const ready = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('null endpoint did not start')), timeoutMs);
    child.on('message', (m) => { if (m?.ready) { clearTimeout(t); resolve(m); } });
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`null endpoint exited (${code}) at start`)); });
  }).catch((e) => { try { child.kill('SIGKILL'); } catch { /* gone */ } throw e; });
  const ask = (cmd, arg) => new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) { reject(new Error('null endpoint not running')); return; }
    const id = ++seq;
    pending.set(id, { resolve, reject });
    child.send({ cmd, id, arg });
  });
  return {
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${ready.port}/`,
    port: ready.port,
    pid: child.pid,
    caFile: certs?.caFile,
    stats: () => ask('stats'),
    latencyDocs: () => ask('latencyDocs'),
    reset: () => ask('reset'),
    set: (o) => ask('set', o),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/**
 * measureCapacity({endpoint, caFile, seconds=5, concurrency=32, opsPerRequest=100,
 *   docBytes=1000, pkPath='customer_id'}) -> {opsPerSecond, requestsPerSecond, mbPerSecond, ...}
 * A tiny load generator (this process, keep-alive, one request in flight per
 * connection) sending the same pre-built bulk body again and again.
 */
export async function measureCapacity({ endpoint, caFile, seconds = 5, concurrency = 32, opsPerRequest = 100,
  docBytes = 1000, db = 'bench', coll = 'capacity' } = {}) {
  const url = new URL(endpoint);
  const isTls = url.protocol === 'https:';
  const agent = isTls
    ? new https.Agent({ ca: caFile ? readFileSync(caFile) : undefined, keepAlive: true, maxSockets: concurrency })
    : new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const ops = [];
  for (let i = 0; i < opsPerRequest; i++) {
    const doc = { order_id: i, customer_id: `cust-${i}`, amount: 12.5, status: 'PAID', payload: '', updated_at: new Date().toISOString(), id: String(i) };
    doc.payload = 'x'.repeat(Math.max(0, docBytes - Buffer.byteLength(JSON.stringify(doc))));
    ops.push(i % 10 === 9
      ? { operationType: 'Delete', id: String(i), partitionKey: `["cust-${i}"]` }
      : { operationType: 'Upsert', partitionKey: `["cust-${i}"]`, resourceBody: doc });
  }
  const body = Buffer.from(JSON.stringify(ops));
  const headers = {
    'content-type': 'application/json', 'content-length': String(body.length), 'x-ms-version': '2020-07-15',
    'x-ms-cosmos-is-batch-request': 'True', 'x-ms-cosmos-batch-atomic': 'False',
    'x-ms-cosmos-batch-continue-on-error': 'True', 'x-ms-documentdb-partitionkeyrangeid': '0',
  };
  const mod = isTls ? https : http;
  const path = `/dbs/${db}/colls/${coll}/docs`;
  const one = () => new Promise((resolve, reject) => {
    const r = mod.request({ host: '127.0.0.1', port: url.port, servername: 'localhost', method: 'POST', path, headers, agent }, (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; });
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(body);
  });
  // warm up the connections, then measure
  await Promise.all(Array.from({ length: concurrency }, one));
  let requests = 0;
  const start = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < deadline) { await one(); requests++; }
  }));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  agent.destroy();
  return {
    opsPerSecond: (requests * opsPerRequest) / secs,
    requestsPerSecond: requests / secs,
    mbPerSecond: (requests * body.length) / secs / 1e6,
    requests, seconds: secs, bodyBytes: body.length, concurrency, opsPerRequest,
  };
}

// ---------------------------------------------------------------------------
// Child side: the server
// ---------------------------------------------------------------------------

function runServer(opts) {
  let config = { track: opts.track, latencyField: opts.latencyField };
  const docs = new Map(); // 'db/coll' -> Map(pk \0 id -> true)
  let st;
  let latencies = [];
  let latDocs = { id: [], written: [], arrived: [] }; // per timed document, for an exact join with commit times
  const newStats = () => ({ requests: 0, batchRequests: 0, bulkRequests: 0, metaRequests: 0, ops: 0, upserts: 0,
    deletes: 0, bytesIn: 0, bytesOut: 0, ru: 0, connections: 0 });
  st = newStats();
  let cpuBase = process.cpuUsage();
  let wallBase = Date.now();

  // pkranges: n ranges splitting the effective-partition-key space evenly
  const splits = (n) => {
    const b = [''];
    for (let i = 1; i < n; i++) b.push(Math.floor((i * 256) / n).toString(16).toUpperCase().padStart(2, '0'));
    b.push('FF');
    return b.slice(0, -1).map((min, i) => ({ id: String(i), _rid: `r${i}`, minInclusive: min, maxExclusive: b[i + 1],
      ridPrefix: i, throughputFraction: 1 / n, status: 'online', parents: [] }));
  };
  const rangesBody = (coll) => JSON.stringify({ _rid: coll, PartitionKeyRanges: splits(Math.max(1, opts.ranges)), _count: Math.max(1, opts.ranges) });

  const json = (res, status, obj, extra = {}) => {
    const buf = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': buf.length,
      'x-ms-activity-id': randomUUID(), 'x-ms-request-charge': '1.00', ...extra });
    res.end(buf);
  };

  const account = (host) => ({
    _rid: 'bench', id: 'bench', _self: '', _dbs: '//dbs/', media: '//media/', addresses: '//addresses/',
    writableLocations: [{ name: 'Local', databaseAccountEndpoint: `${opts.tls ? 'https' : 'http'}://${host}/` }],
    readableLocations: [{ name: 'Local', databaseAccountEndpoint: `${opts.tls ? 'https' : 'http'}://${host}/` }],
    enableMultipleWriteLocations: false,
    userReplicationPolicy: { asyncReplication: false, minReplicaSetSize: 1, maxReplicasetSize: 4 },
    userConsistencyPolicy: { defaultConsistencyLevel: 'Session' },
    systemReplicationPolicy: { minReplicaSetSize: 1, maxReplicasetSize: 4 },
    readPolicy: { primaryReadCoefficient: 1, secondaryReadCoefficient: 1 },
    queryEngineConfiguration: '{}',
  });

  const RESULT = { 200: '{"statusCode":200,"requestCharge":', 201: '{"statusCode":201,"requestCharge":', 204: '{"statusCode":204,"requestCharge":' };

  function onBatch(req, res, key, body) {
    st.requests++;
    st.bytesIn += body.length;
    const bulk = !/^true$/i.test(req.headers['x-ms-cosmos-batch-atomic'] || '');
    if (bulk) st.bulkRequests++; else st.batchRequests++;
    let ops;
    try { ops = JSON.parse(body); } catch { ops = null; }
    if (!Array.isArray(ops)) { json(res, 400, { code: 'BadRequest', message: 'not a JSON array' }); return; }
    const headerPk = req.headers['x-ms-documentdb-partitionkey'];
    let map = null;
    if (config.track) { map = docs.get(key); if (!map) { map = new Map(); docs.set(key, map); } }
    const perOpBytes = body.length / Math.max(1, ops.length);
    const upsertRu = 10 * Math.max(1, Math.ceil(perOpBytes / 1024));
    const lf = config.latencyField;
    const now = lf ? Date.now() : 0;
    let ru = 0;
    const parts = new Array(ops.length);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      const t = op.operationType;
      let status;
      let charge;
      if (t === 'Delete' || t === 'delete') {
        st.deletes++;
        status = 204;
        charge = 10;
        if (map) map.delete(`${op.partitionKey ?? headerPk}\u0000${op.id}`);
      } else {
        st.upserts++;
        const b = op.resourceBody;
        charge = upsertRu;
        status = 200;
        if (map) {
          const k = `${op.partitionKey ?? headerPk}\u0000${b?.id}`;
          if (!map.has(k)) { status = 201; map.set(k, true); }
        }
        if (lf && b && typeof b[lf] === 'string') {
          let t0 = Date.parse(b[lf]);
          // PostgreSQL's text form (wal2json): "2026-01-01 10:00:00.123456+00"
          if (Number.isNaN(t0)) t0 = Date.parse(b[lf].replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
          if (!Number.isNaN(t0)) {
            latencies.push(now - t0);
            latDocs.id.push(String(b.id));
            latDocs.written.push(t0);
            latDocs.arrived.push(now);
          }
        }
      }
      ru += charge;
      parts[i] = `${RESULT[status]}${charge}}`;
    }
    st.ops += ops.length;
    st.ru += ru;
    const out = `[${parts.join(',')}]`;
    st.bytesOut += out.length;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out),
      'x-ms-activity-id': randomUUID(), 'x-ms-request-charge': ru.toFixed(2), 'x-ms-session-token': '0:1#1' });
    res.end(out);
  }

  function handler(req, res) {
    const [p] = req.url.split('?');
    const segs = p.split('/').filter(Boolean).map((s) => { try { return decodeURIComponent(s); } catch { return s; } });
    if (req.method === 'POST' && segs.length === 5 && segs[0] === 'dbs' && segs[2] === 'colls' && segs[4] === 'docs'
      && /^true$/i.test(req.headers['x-ms-cosmos-is-batch-request'] || '')) {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => onBatch(req, res, `${segs[1]}/${segs[3]}`, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
      return;
    }
    req.resume();
    req.on('end', () => {
      st.metaRequests++;
      if (req.method === 'GET' && segs.length === 0) return json(res, 200, account(req.headers.host || `127.0.0.1:${port}`));
      if (req.method === 'GET' && segs.length === 2 && segs[0] === 'dbs') return json(res, 200, { id: segs[1], _rid: segs[1], _self: `dbs/${segs[1]}/` });
      if (req.method === 'GET' && segs.length === 4 && segs[0] === 'dbs' && segs[2] === 'colls') {
        const paths = opts.pkPaths[`${segs[1]}/${segs[3]}`] ?? opts.defaultPkPaths;
        return json(res, 200, {
          id: segs[3], _rid: `${segs[1]}.${segs[3]}`, _self: `dbs/${segs[1]}/colls/${segs[3]}/`,
          indexingPolicy: { indexingMode: 'consistent', automatic: true, includedPaths: [{ path: '/*' }], excludedPaths: [] },
          partitionKey: { paths, kind: paths.length > 1 ? 'MultiHash' : 'Hash', version: 2 },
        }, { 'x-ms-alt-content-path': `dbs/${segs[1]}` });
      }
      if (req.method === 'GET' && segs.length === 5 && segs[4] === 'pkranges') {
        const buf = rangesBody(segs[3]);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(buf),
          'x-ms-activity-id': randomUUID(), 'x-ms-request-charge': '1.00', 'x-ms-item-count': String(Math.max(1, opts.ranges)) });
        return res.end(buf);
      }
      return json(res, 404, { code: 'NotFound', message: `null endpoint: no ${req.method} ${p}` });
    });
  }

  const serverOpts = { keepAlive: true, keepAliveTimeout: 60000, requestTimeout: 0, headersTimeout: 60000, maxHeaderSize: 65536 };
  const server = opts.tls
    ? https.createServer({ ...serverOpts, cert: readFileSync(opts.certFile), key: readFileSync(opts.keyFile), minVersion: 'TLSv1.2' }, handler)
    : http.createServer(serverOpts, handler);
  server.keepAliveTimeout = 60000;
  const sockets = new Set();
  server.on('connection', (s) => { st.connections++; sockets.add(s); s.setNoDelay(true); s.once('close', () => sockets.delete(s)); });
  server.on('tlsClientError', () => {});
  server.on('clientError', (err, s) => { try { s.destroy(); } catch { /* gone */ } });
  let port = 0;

  const pct = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
  const commands = {
    stats: () => {
      const cpu = process.cpuUsage(cpuBase);
      const lat = Float64Array.from(latencies).sort();
      const liveCounts = {};
      for (const [k, m] of docs) liveCounts[k] = m.size;
      return { ...st, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: Date.now() - wallBase,
        openSockets: sockets.size, live: liveCounts,
        latency: { count: lat.length, p50: pct(lat, 0.5), p90: pct(lat, 0.9), p99: pct(lat, 0.99), max: lat.length ? lat[lat.length - 1] : null } };
    },
    latencyDocs: () => latDocs,
    reset: () => { st = newStats(); latencies = []; latDocs = { id: [], written: [], arrived: [] }; docs.clear(); cpuBase = process.cpuUsage(); wallBase = Date.now(); return true; },
    set: (o) => { config = { ...config, ...o }; return config; },
  };
  process.on('message', (m) => {
    if (!m?.cmd) return;
    try {
      const fn = commands[m.cmd];
      if (!fn) throw new Error(`unknown command ${m.cmd}`);
      process.send({ reply: true, id: m.id, result: fn(m.arg) });
    } catch (e) {
      process.send({ reply: true, id: m.id, error: String(e.message || e) });
    }
  });
  server.listen(opts.port || 0, '127.0.0.1', () => {
    port = server.address().port;
    process.send?.({ ready: true, port });
  });
  exitOnStop(server, sockets, 300);
}

if (process.argv[1] === self && process.argv[2] === '--child') runServer(JSON.parse(process.argv[3]));
