// Monitoring is exact: with the fault proxy charging realistic, varied RU and
// keeping a ledger of every answer, container_stats agrees with what Cosmos DB
// (the proxy) saw — ru_total to the cent, requests, upserts, deletes (404s
// included), throttled, retries and dead_lettered — and status tells the
// truth: lag_bytes/lag_seconds grow while paused, throttled or failing and
// return to 0 after catching up; state goes streaming → throttled → streaming,
// paused, error → streaming. Also ru_per_second, avg_batch_ops, p50/p99,
// last_ack_at and reset_stats().
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { Cleanup, sleep, waitFor } from '../lib/util.mjs';

const cleanup = new Cleanup();
let sink;
let proxy;
before(async () => {
  sink = await startSink();
  cleanup.add(() => sink.stop());
  proxy = await startFaultProxy({ emulator: sink.emu });
  cleanup.add(() => proxy.stop());
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
});
after(async () => {
  if (process.env.COSMOS_SINK_TEST_LOG) {
    console.log(sink?.pg.serverLog().split('\n').filter((l) => /FATAL|PANIC|ERROR|WARNING|cosmos_sink:/.test(l)).slice(-60).join('\n'));
  }
  await cleanup.run();
});

const ORDERS = (t) => `CREATE TABLE ${t} (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
  amount numeric(12,2), payload text)`;

const WRITE_KINDS = new Set(['batch', 'bulk']);
const cents = (x) => Math.round(Number(x) * 100);

async function stats(container) {
  const [row] = await sink.pg.query(`SELECT *, ru_total::text AS ru_text, round(ru_total, 2) = ru_total AS ru_whole_cents,
      now() - last_ack_at < interval '60 s' AS ack_recent
    FROM cosmos_sink.container_stats WHERE container = $1`, [container]);
  assert.ok(row, `no container_stats row for ${container}`);
  return row;
}

/**
 * What the proxy saw for one container's write requests (batch + bulk), from
 * its request records: the expected value of every container_stats counter.
 * retries: ops of requests that failed as a whole in a way that is retried
 * (429, 403, 5xx, a multi-op 400/413 that is split) plus per-op 424/429 —
 * each such op is sent again (no test here supersedes a failed op with a
 * newer state of its document). dead_lettered: per-op 400/413, and the op of
 * a single-op request refused with 400/413.
 */
async function proxyView(container) {
  const path = `/dbs/shop/colls/${container}/docs`;
  const recs = (await proxy.requests({})).filter((r) => WRITE_KINDS.has(r.kind) && r.path === path);
  const v = { requests: recs.length, ruCents: 0, upserts: 0, deletes: 0, deletes404: 0, throttled: 0,
    retries: 0, deadLettered: 0, opsSent: 0, byKind: {}, byStatus: {}, charges: new Set() };
  for (const r of recs) {
    v.ruCents += cents(r.ru);
    v.charges.add(r.ru);
    v.opsSent += r.ops;
    v.byKind[r.kind] = (v.byKind[r.kind] || 0) + 1;
    v.byStatus[r.status] = (v.byStatus[r.status] || 0) + 1;
    if (r.status === 429) v.throttled++;
    const os = r.opStatus ?? {};
    if (r.status === 200 || r.status === 207) {
      v.upserts += (os[200] || 0) + (os[201] || 0);
      v.deletes += (os[204] || 0) + (os[404] || 0);
      v.deletes404 += os[404] || 0;
      v.retries += (os[424] || 0) + (os[429] || 0);
      v.deadLettered += (os[400] || 0) + (os[413] || 0);
    } else if ((r.status === 400 || r.status === 413) && r.ops === 1) {
      v.deadLettered += 1;
    } else {
      v.retries += r.ops; // 429, 403, 5xx, split 400/413: every op goes again
    }
  }
  return v;
}

/** container_stats of a container equals what the proxy saw, counter by counter. */
async function assertStatsMatchProxy(container, { retries, deadLettered } = {}) {
  const s = await stats(container);
  const p = await proxyView(container);
  const got = {
    requests: Number(s.requests), ruCents: cents(s.ru_total), upserts: Number(s.upserts),
    deletes: Number(s.deletes), throttled: Number(s.throttled), retries: Number(s.retries),
    deadLettered: Number(s.dead_lettered),
  };
  const want = {
    requests: p.requests, ruCents: p.ruCents, upserts: p.upserts, deletes: p.deletes,
    throttled: p.throttled, retries: retries ?? p.retries, deadLettered: deadLettered ?? p.deadLettered,
  };
  assert.deepEqual(got, want, `${container}: container_stats vs proxy records (proxy byStatus ${JSON.stringify(p.byStatus)})`);
  assert.ok(s.ru_whole_cents, `${container}: ru_total ${s.ru_text} is not the exact sum of 2-decimal charges`);
  // avg_batch_ops = operations sent / requests, exactly
  if (p.requests > 0) assert.ok(Math.abs(s.avg_batch_ops - p.opsSent / p.requests) < 1e-9, `avg_batch_ops ${s.avg_batch_ops} vs ${p.opsSent}/${p.requests}`);
  return { s, p };
}

/** Poll status every 50 ms until stop(); keeps every sample. */
function statusPoller() {
  const samples = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const [st] = await sink.pg.query(`SELECT state, lag_bytes, lag_seconds, last_error FROM cosmos_sink.status`);
      samples.push({ t: Date.now(), state: st.state, lagBytes: Number(st.lag_bytes), lagSeconds: Number(st.lag_seconds), lastError: st.last_error });
      await sleep(50);
    }
  })();
  return {
    samples,
    states: () => samples.map((x) => x.state).filter((s, i, a) => i === 0 || a[i - 1] !== s),
    async stop() { running = false; await done; return samples; },
  };
}

async function waitForState(pred, what, timeoutMs = 30000) {
  let st;
  await waitFor(async () => { st = await sink.status(); return pred(st); }, { timeoutMs, intervalMs: 50, what })
    .catch((e) => { throw new Error(`${e.message}; status: ${JSON.stringify(st)}`); });
  return st;
}

async function assertCaughtUp(table, container) {
  const st = await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify(table, 'order_id', container);
  assert.ok(r.ok, `${table} -> ${container}: ${r.summary}`);
  return st;
}

/** After catching up: nothing committed is waiting, so lag_seconds is 0 and lag_bytes is background WAL only. */
async function assertNoLag() {
  const st = await sink.waitCaughtUp({ timeoutMs: 60000 });
  assert.ok(['streaming', 'idle'].includes(st.state), `state ${st.state} after catching up`);
  assert.ok(Number(st.lag_bytes) < 1e6, `lag_bytes ${st.lag_bytes} after catching up`);
  await waitFor(async () => Number((await sink.status()).lag_seconds) === 0, { timeoutMs: 5000, what: 'lag_seconds 0' });
  return st;
}

test('ru_total, requests, upserts and deletes equal the proxy ledger exactly', async () => {
  await sink.pg.query(ORDERS('ru_orders'));
  // rows that exist before the route: their deletes find nothing in Cosmos DB (404)
  await sink.pg.query(`INSERT INTO ru_orders SELECT g, 'pre', g, 'x' FROM generate_series(9001, 9030) g`);
  await sink.route('ru_orders', 'ru_orders', 'customer_id');
  const [{ t0 }] = await sink.pg.query('SELECT clock_timestamp() AS t0');
  const l0 = await proxy.ledger();

  // documents of 0..5 KiB of payload: 10, 20, ... 60 RU per upsert
  const size = (expr) => `repeat('x', (((${expr}) % 6) * 1000 + 10)::int)`;
  // many changes per logical partition (transactional batches) ...
  await sink.pg.query(`INSERT INTO ru_orders SELECT g, 'c' || (g % 10), g, ${size('g')} FROM generate_series(1, 300) g`);
  // ... and single-document partitions (bulk requests)
  await sink.pg.query(`INSERT INTO ru_orders SELECT g, 'solo-' || g, g, ${size('g * 7')} FROM generate_series(1001, 1100) g`);
  await sink.waitCaughtUp();
  await sink.pg.query(`UPDATE ru_orders SET payload = ${size('order_id + 3')}, amount = amount + 1 WHERE order_id % 3 = 0 AND order_id < 9000`);
  await sink.pg.query(`DELETE FROM ru_orders WHERE order_id % 7 = 0 AND order_id < 9000`);
  await sink.pg.query(`DELETE FROM ru_orders WHERE order_id BETWEEN 9001 AND 9030`);
  await sink.pg.query(`INSERT INTO ru_orders VALUES (5000, 'gone', 1, ${size(2)})`);
  await sink.pg.query(`DELETE FROM ru_orders WHERE order_id = 5000`);
  await assertCaughtUp('ru_orders', 'ru_orders');

  const l1 = await proxy.ledger();
  const d = (k) => l1[k] - l0[k];
  const s = await stats('ru_orders');
  // ru_total: the exact sum of the charges the proxy reported, to the cent
  assert.equal(Number(s.ru_total).toFixed(2), (Math.round((l1.ru - l0.ru) * 100) / 100).toFixed(2),
    `ru_total ${s.ru_text} vs ledger ${l1.ru} - ${l0.ru}`);
  assert.ok(s.ru_whole_cents, `ru_total ${s.ru_text} has more than 2 decimals`);
  // container/pkranges reads are not write requests and are not counted
  const writes = ['batch', 'bulk'].reduce((a, k) => a + (l1.byKind[k] || 0) - (l0.byKind[k] || 0), 0);
  assert.equal(d('writeRequests'), writes);
  assert.equal(Number(s.requests), writes, `requests vs ledger byKind ${JSON.stringify(l1.byKind)}`);
  assert.ok((l1.byKind.batch || 0) - (l0.byKind.batch || 0) > 0, 'some transactional batches');
  assert.ok((l1.byKind.bulk || 0) - (l0.byKind.bulk || 0) > 0, 'some bulk requests');
  assert.equal(Number(s.upserts), d('upserts'));
  assert.equal(Number(s.deletes), d('deletes') + d('deletesNotFound'), 'deletes count 404s as done');
  assert.ok(d('deletesNotFound') >= 30, `deletes of documents never sent answer 404: ${d('deletesNotFound')}`);
  assert.equal(Number(s.throttled), 0);
  assert.equal(Number(s.retries), 0);
  assert.equal(Number(s.dead_lettered), 0);
  const { p } = await assertStatsMatchProxy('ru_orders', { retries: 0, deadLettered: 0 });
  assert.ok(p.charges.size >= 5, `charges vary: ${[...p.charges].join(', ')}`);

  // the other columns
  assert.ok(s.ru_per_second > 0, `ru_per_second ${s.ru_per_second}`);
  const [{ elapsed }] = await sink.pg.query('SELECT extract(epoch FROM clock_timestamp() - $1::timestamptz)::float8 AS elapsed', [t0]);
  if (elapsed < 55) {
    // every charge of this route fell in the last 60 s: RU/s over 60 s is ru_total / 60
    assert.ok(Math.abs(s.ru_per_second * 60 - Number(s.ru_total)) < 1e-6, `ru_per_second ${s.ru_per_second} vs ru_total ${s.ru_total} / 60`);
  }
  assert.ok(s.avg_batch_ops >= 1 && s.avg_batch_ops <= 100, `avg_batch_ops ${s.avg_batch_ops}`);
  assert.ok(s.p50_ms > 0 && s.p50_ms <= s.p99_ms, `p50 ${s.p50_ms} p99 ${s.p99_ms}`);
  for (const q of [s.p50_ms, s.p99_ms]) assert.ok(Number.isInteger(Math.log2(q)), `${q} ms is a power-of-two bucket bound`);
  assert.ok(s.ack_recent, `last_ack_at ${s.last_ack_at}`);
});

test('throttling: state throttled with growing lag, throttled and retries match the 429s', async (t) => {
  await sink.pg.query(ORDERS('thr_orders'));
  await sink.route('thr_orders', 'thr_orders', 'customer_id');
  await sink.waitCaughtUp();
  const poll = statusPoller();
  let next = 1;
  const write = async (n, per = 50) => {
    for (let i = 0; i < n; i += per, next += per) {
      await sink.pg.query(`INSERT INTO thr_orders SELECT g, 'c' || (g % 40), g, repeat('t', ((g % 3) * 900)::int)
        FROM generate_series($1::bigint, $2::bigint) g`, [next, next + per - 1]);
    }
  };
  try {
    // unthrottled load until the poller has seen it streaming
    for (let i = 0; i < 40 && !poll.samples.some((x) => x.state === 'streaming'); i++) await write(200);
    assert.ok(poll.samples.some((x) => x.state === 'streaming'), `state streaming under load: ${poll.states().join(' → ')}`);
    await proxy.set({ seed: 3, throttleRate: 0.5, retryAfterMs: 500 });
    await write(1500);
    await waitFor(() => poll.samples.some((x) => x.state === 'throttled'), { timeoutMs: 20000, intervalMs: 50, what: 'state throttled' });
    await sleep(1500);
    const throttledSamples = poll.samples.filter((x) => x.state === 'throttled');
    for (const x of throttledSamples) {
      assert.ok(x.lagBytes > 0 && x.lagSeconds > 0, `lag while throttled: ${JSON.stringify(x)}`);
    }
    await proxy.clear();
    await write(500);
    await assertNoLag();
  } finally {
    await proxy.clear();
    await poll.stop();
  }
  const states = poll.states();
  const firstThrottled = states.indexOf('throttled');
  assert.ok(states.slice(0, firstThrottled).includes('streaming'), `streaming before throttled: ${states.join(' → ')}`);
  assert.ok(states.slice(firstThrottled + 1).some((s) => s === 'streaming' || s === 'idle'), `back to streaming/idle: ${states.join(' → ')}`);
  await assertCaughtUp('thr_orders', 'thr_orders');
  const { s, p } = await assertStatsMatchProxy('thr_orders');
  assert.ok(Number(s.throttled) > 0, `throttled ${s.throttled}`);
  assert.equal(Number(s.throttled), p.byStatus[429] ?? 0);
  assert.ok(Number(s.retries) > 0);
  t.diagnostic(`states ${states.join(' → ')}; ${s.throttled} throttled of ${s.requests} requests, ${s.retries} retries`);
});

test('pause: state paused, lag_bytes and lag_seconds grow; resume brings both back to 0', async (t) => {
  await sink.pg.query(ORDERS('pause_orders'));
  await sink.route('pause_orders', 'pause_orders', 'customer_id');
  await sink.waitCaughtUp();
  const before = await proxyView('pause_orders');
  await sink.pg.query('SELECT cosmos_sink.pause()');
  try {
    await waitForState((st) => st.state === 'paused', 'state paused');
    await sink.pg.query(`INSERT INTO pause_orders SELECT g, 'c' || (g % 5), g, 'p' FROM generate_series(1, 200) g`);
    const committed = Date.now();
    // the paused worker still decodes (about once a second), so the oldest unacknowledged commit becomes known
    const a = await waitForState((st) => Number(st.lag_seconds) > 0, 'lag_seconds > 0 while paused', 5000);
    t.diagnostic(`lag_seconds > 0 ${Date.now() - committed} ms after the commit (paused)`);
    await sink.pg.query(`INSERT INTO pause_orders SELECT g, 'c' || (g % 5), g, 'p' FROM generate_series(201, 400) g`);
    await sleep(1200);
    const b = await sink.status();
    assert.equal(b.state, 'paused');
    assert.ok(Number(a.lag_bytes) > 0 && Number(b.lag_bytes) > Number(a.lag_bytes), `lag_bytes grows while paused: ${a.lag_bytes} → ${b.lag_bytes}`);
    // the issue demands it: lag_seconds grows while paused (age of the oldest committed change not yet
    // acknowledged); a worker that does not decode while paused leaves it at 0 here
    assert.ok(Number(b.lag_seconds) >= 1 && Number(b.lag_seconds) > Number(a.lag_seconds),
      `lag_seconds grows while paused: ${a.lag_seconds} → ${b.lag_seconds}`);
    const during = await proxyView('pause_orders');
    assert.equal(during.requests, before.requests, 'no write request while paused');
  } finally {
    await sink.pg.query('SELECT cosmos_sink.resume()');
  }
  await assertNoLag();
  await assertCaughtUp('pause_orders', 'pause_orders');
  await assertStatsMatchProxy('pause_orders', { retries: 0, deadLettered: 0 });
});

test('403 from the container: state error naming it, lag grows; healed on the next retry once cleared', async (t) => {
  await sink.pg.query(ORDERS('err_orders'));
  await sink.route('err_orders', 'err_orders', 'customer_id');
  await sink.pg.query(`INSERT INTO err_orders SELECT g, 'c' || (g % 5), g, 'e' FROM generate_series(1, 50) g`);
  await sink.waitCaughtUp();
  const poll = statusPoller();
  let cleared;
  try {
    await proxy.setStatusForContainer('shop', 'err_orders', 403);
    await sink.pg.query(`INSERT INTO err_orders SELECT g, 'c' || (g % 5), g, 'e' FROM generate_series(51, 150) g`);
    const a = await waitForState((st) => st.state === 'error' && /403/.test(st.last_error ?? ''), 'state error with 403');
    assert.match(a.last_error, /shop\/err_orders/);
    await sleep(1200);
    const b = await sink.status();
    assert.equal(b.state, 'error');
    assert.ok(Number(b.lag_bytes) > 0, `lag_bytes ${b.lag_bytes}`);
    assert.ok(Number(b.lag_seconds) >= 1 && Number(b.lag_seconds) > Number(a.lag_seconds), `lag_seconds grows: ${a.lag_seconds} → ${b.lag_seconds}`);
  } finally {
    await proxy.setStatusForContainer('shop', 'err_orders', null);
    cleared = Date.now();
  }
  try {
    await waitForState((st) => ['streaming', 'idle'].includes(st.state), 'state streaming/idle after the 403 is gone', 20000);
    await sink.waitCaughtUp({ timeoutMs: 30000 });
  } finally {
    await poll.stop();
  }
  const healedMs = Date.now() - cleared;
  assert.ok(healedMs <= 15000, `healed ${healedMs} ms after the 403 stopped`);
  const states = poll.states();
  const e = states.indexOf('error');
  assert.ok(e >= 0 && states.slice(e + 1).some((s) => s === 'streaming' || s === 'idle'), states.join(' → '));
  t.diagnostic(`states ${states.join(' → ')}; healed ${healedMs} ms after the 403 stopped`);
  await assertNoLag();
  await assertCaughtUp('err_orders', 'err_orders');
  assert.equal((await sink.status()).last_error, null);
  const { p } = await assertStatsMatchProxy('err_orders', { deadLettered: 0 });
  assert.ok((p.byStatus[403] ?? 0) > 0, `the proxy answered 403: ${JSON.stringify(p.byStatus)}`);
});

test('dead_lettered counts exactly the operations the proxy refused with 400', async () => {
  await sink.pg.query(`CREATE TABLE dl_orders (order_id text PRIMARY KEY, customer_id text NOT NULL, amount numeric(12,2), payload text)`);
  await sink.route('dl_orders', 'dl_orders', 'customer_id');
  await sink.pg.query(`INSERT INTO dl_orders SELECT 'ok-' || g, 'c' || (g % 5), g, 'd' FROM generate_series(1, 40) g`);
  await sink.waitCaughtUp();
  const s0 = await stats('dl_orders');
  const v0 = await proxyView('dl_orders');

  // a whole single-op request refused with 400: that op is poison
  await proxy.failNext(1, { status: 400, kinds: ['bulk'] });
  await sink.pg.query(`INSERT INTO dl_orders VALUES ('refused-1', 'solo', 1, 'bad')`);
  await sink.waitCaughtUp();
  // one op of a bulk refused with 400 (an id longer than this "service" allows), the others applied
  await proxy.set({ maxIdBytes: 20 });
  try {
    await sink.pg.query(`INSERT INTO dl_orders SELECT 'ok2-' || g, 'd' || g, g, 'd' FROM generate_series(1, 5) g
      UNION ALL SELECT 'a-rather-long-id-of-30-bytes..', 'long', 7, 'bad'`);
    await sink.waitCaughtUp();
  } finally {
    await proxy.set({ maxIdBytes: 1023 });
    await proxy.clear();
  }
  const s1 = await stats('dl_orders');
  const v1 = await proxyView('dl_orders');
  assert.equal(v1.deadLettered - v0.deadLettered, 2, `the proxy refused 2 ops with 400: ${JSON.stringify(v1.byStatus)}`);
  assert.equal(Number(s1.dead_lettered) - Number(s0.dead_lettered), v1.deadLettered - v0.deadLettered);
  const parked = await sink.pg.query(`SELECT doc_id, http_status FROM cosmos_sink.dead_letters
    WHERE staging_table = 'dl_orders'::regclass ORDER BY doc_id`);
  assert.deepEqual(parked.map((r) => [r.doc_id, r.http_status]),
    [['a-rather-long-id-of-30-bytes..', 400], ['refused-1', 400]]);
  const r = await sink.verify('dl_orders', 'order_id', 'dl_orders');
  assert.deepEqual(r.missing.map((m) => m.id ?? m).sort(), ['a-rather-long-id-of-30-bytes..', 'refused-1'].sort(), r.summary);
  assert.equal(r.stale.length + r.extra.length, 0, r.summary);
  await assertStatsMatchProxy('dl_orders', { retries: 0 });
});

test('reset_stats() zeroes every counter and moves stats_reset forward', async () => {
  const before = await sink.pg.query('SELECT container, stats_reset, requests FROM cosmos_sink.container_stats ORDER BY container');
  assert.ok(before.every((r) => Number(r.requests) > 0), JSON.stringify(before));
  await sink.pg.query('SELECT cosmos_sink.reset_stats()');
  const rows = await sink.pg.query(`SELECT c.container, c.upserts, c.deletes, c.requests, c.throttled, c.retries, c.dead_lettered,
      c.ru_total::text AS ru, c.ru_per_second, c.avg_batch_ops, c.p50_ms, c.p99_ms, c.last_ack_at,
      c.stats_reset > b.stats_reset AS moved
    FROM cosmos_sink.container_stats c JOIN unnest($1::text[], $2::timestamptz[]) b(container, stats_reset) USING (container)`,
  [before.map((r) => r.container), before.map((r) => r.stats_reset)]);
  assert.equal(rows.length, before.length);
  for (const r of rows) {
    assert.deepEqual([r.upserts, r.deletes, r.requests, r.throttled, r.retries, r.dead_lettered].map(Number), [0, 0, 0, 0, 0, 0], r.container);
    assert.equal(Number(r.ru), 0, r.container);
    assert.deepEqual([r.ru_per_second, r.avg_batch_ops, r.p50_ms, r.p99_ms], [0, 0, 0, 0], r.container);
    assert.equal(r.last_ack_at, null, r.container);
    assert.equal(r.moved, true, `${r.container}: stats_reset moved forward`);
  }
  // counting starts again from zero
  await sink.pg.query(`INSERT INTO ru_orders VALUES (7001, 'again', 1, 'x')`);
  await sink.waitCaughtUp();
  const s = await stats('ru_orders');
  assert.equal(Number(s.upserts), 1);
  assert.equal(Number(s.requests), 1);
  assert.equal(Number(s.ru_total), 10);
});
