// A second application writing into a container through the fault proxy at a
// steady RU rate, so that tests can check how the sink shares a container's
// provisioned throughput (the proxy's offers option) with another client.
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { masterAuthorization } from './fault-proxy-core.mjs';

const TICK_MS = 50; // one request per tick: 20 per second
const RU_PER_DOC = 10; // what the proxy charges for an upsert of a doc under 1 KiB
const MAX_OPS = 100; // ops per transactional batch
const PK_VALUE = 'consumer'; // the consumer's own partition key value: no pkranges needed
const USER_AGENT = 'ru-consumer';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A CA given as PEM text/Buffer, or as the path of a PEM file (proxy.caFile). */
const caPem = (ca) => (Buffer.isBuffer(ca) || String(ca).includes('-----BEGIN') ? ca : readFileSync(ca));

/** Set the value at a partition key path ('/pk', 'pk', '/a/b') of a doc. */
function setPath(doc, path, value) {
  const parts = path.split('/').filter(Boolean);
  let o = doc;
  for (const p of parts.slice(0, -1)) o = (o[p] ??= {});
  o[parts[parts.length - 1]] = value;
}

/**
 * startRuConsumer({endpoint, key, ca, db, coll, pkPath='/pk' (the leading '/' is optional), ruPerSecond})
 *   -> {stop(): Promise<{requests, throttled, ru, ops, errors, skipped, lastError}>, stats}
 * Every 50 ms (a fixed schedule from the start, no drift; a late tick is sent at once) it upserts, in one
 * transactional batch under partition key value 'consumer' (every level of a
 * hierarchical pkPath array), enough new docs under 1 KiB (10 RU each) to spend
 * ruPerSecond/20 RU (fractions carry over to the next tick), so that the rate
 * over any second is ruPerSecond +- one tick. Requests are signed with the
 * master key and carry User-Agent 'ru-consumer'. A 429 is counted in
 * `throttled` and the same batch is retried after x-ms-retry-after-ms; ticks
 * missed meanwhile are skipped (counted in `skipped`), as a backed-off client
 * would. Other failures count in `errors` (lastError says the last one).
 * ca: PEM (Buffer/string) or a PEM file path. stats: the live counters;
 * stop() ends after the request in flight and resolves a copy of them.
 * ruPerSecond <= 20000 (100 ops per tick).
 */
export function startRuConsumer({ endpoint, key, ca, db, coll, pkPath = '/pk', ruPerSecond }) {
  const perTick = ruPerSecond * TICK_MS / 1000;
  if (!(perTick > 0 && perTick / RU_PER_DOC <= MAX_OPS)) throw new Error(`startRuConsumer: ruPerSecond must be in (0, ${MAX_OPS * RU_PER_DOC * 1000 / TICK_MS}]`);
  const url = new URL(endpoint);
  const agent = new https.Agent({ ca: caPem(ca), keepAlive: true, maxSockets: 1 });
  const paths = Array.isArray(pkPath) ? pkPath : [pkPath];
  const headerPk = JSON.stringify(paths.map(() => PK_VALUE));
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`; // ids unique across consumers
  const stats = { requests: 0, throttled: 0, ru: 0, ops: 0, errors: 0, skipped: 0, lastError: null };
  let stopping = false;
  let docSeq = 0;

  /** n upserts of fresh small docs of the consumer's partition. */
  function batchOps(n) {
    return Array.from({ length: n }, () => {
      const doc = { id: `${USER_AGENT}-${run}-${++docSeq}`, writer: USER_AGENT };
      for (const p of paths) setPath(doc, p, PK_VALUE);
      return { operationType: 'Upsert', resourceBody: doc };
    });
  }

  /** POST one transactional batch: {status, headers} (the body is not needed). */
  function post(ops) {
    const body = Buffer.from(JSON.stringify(ops));
    const date = new Date().toUTCString();
    const headers = {
      'x-ms-date': date, 'x-ms-version': '2020-07-15', 'user-agent': USER_AGENT,
      authorization: masterAuthorization(key, 'POST', 'docs', `dbs/${db}/colls/${coll}`, date),
      'content-type': 'application/json', 'content-length': String(body.length),
      'x-ms-cosmos-is-batch-request': 'True', 'x-ms-cosmos-batch-atomic': 'True',
      'x-ms-documentdb-partitionkey': headerPk,
    };
    const path = `/dbs/${encodeURIComponent(db)}/colls/${encodeURIComponent(coll)}/docs`;
    return new Promise((resolve, reject) => {
      const r = https.request({ host: url.hostname, port: url.port, method: 'POST', path, headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }));
        res.on('error', reject);
      });
      r.on('error', reject);
      r.end(body);
    });
  }

  /** Send a batch until it is answered other than 429 (or the consumer stops): whether it was throttled. */
  async function sendBatch(ops) {
    for (let throttled = false; ; throttled = true) {
      stats.requests++;
      let res;
      try { res = await post(ops); } catch (err) { stats.errors++; stats.lastError = err.code || err.message; return throttled; }
      if (res.status === 429) {
        stats.throttled++;
        await sleep(Number(res.headers['x-ms-retry-after-ms']) || TICK_MS);
        if (stopping) return true; // given up: the consumer is stopping
        continue;
      }
      if (res.status === 200) {
        stats.ru += Number(res.headers['x-ms-request-charge']) || 0;
        stats.ops += ops.length;
      } else {
        stats.errors++;
        stats.lastError = `HTTP ${res.status}`;
      }
      return throttled;
    }
  }

  /** The fixed schedule: tick k is due at start + 50 k ms (a late tick is sent at once; after a 429 back-off the missed ones are skipped). */
  async function loop() {
    const start = performance.now();
    let credit = 0;
    for (let tick = 0; !stopping;) {
      await sleep(start + tick * TICK_MS - performance.now());
      if (stopping) break;
      credit += perTick;
      const n = Math.floor(credit / RU_PER_DOC);
      credit -= n * RU_PER_DOC;
      const backedOff = n > 0 && await sendBatch(batchOps(n));
      const next = backedOff ? Math.max(tick + 1, Math.ceil((performance.now() - start) / TICK_MS)) : tick + 1;
      stats.skipped += next - tick - 1;
      tick = next;
    }
  }

  const done = loop();
  return {
    stats,
    async stop() {
      stopping = true;
      await done;
      agent.destroy();
      return { ...stats, ru: Math.round(stats.ru * 100) / 100 };
    },
  };
}
