// Faults through the fault proxy (signature checks, realistic RU, 429s,
// 5xx/408/449/410, stalls, resets, truncated answers): nothing is lost or
// duplicated; wrong credentials stop the stream with a clear error and heal
// once fixed; Entra ID tokens work and are re-read when the file changes;
// items Cosmos DB refuses are parked and can be retried after the fix.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { startSink } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { EMULATOR_KEY } from '../lib/emulator.mjs';
import { runFlinkLoad } from '../lib/flink.mjs';
import { waitFor } from '../lib/util.mjs';

let sink;
let proxy;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.request_timeout_ms': 1500 } });
  proxy = await startFaultProxy({ emulator: sink.emu });
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

const ORDERS = (t) => `CREATE TABLE ${t} (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
  amount numeric(12,2), status text, payload text, updated_at timestamptz)`;

async function waitForState(state, pattern, timeoutMs = 30000) {
  let st;
  await waitFor(async () => {
    st = await sink.status();
    return st.state === state && (!pattern || pattern.test(st.last_error ?? ''));
  }, { timeoutMs, what: `state ${state} ${pattern ?? ''}` }).catch((e) => {
    throw new Error(`${e.message}; status: ${JSON.stringify(st)}`);
  });
  return st;
}

test('429s, 5xx, 408, 449, 410, stalls, resets and truncated answers: every change arrives once', async () => {
  await sink.pg.query(ORDERS('f_orders'));
  await sink.route('f_orders', 'f_orders', 'customer_id');
  await proxy.reset();
  await proxy.set({ seed: 11, throttleRate: 0.15, retryAfterMs: 30, opThrottleRate: 0.05,
    errorRate: { 503: 0.05, 408: 0.03, 449: 0.03, 410: 0.03 }, resetRate: 0.02,
    truncateRate: 0.02, stallRate: 0.01, stallMs: 4000 });
  // and for certain, whatever the random draws: one of each hard fault early on
  await proxy.failNext(1, { fault: 'truncate' });
  await proxy.failNext(1, { fault: 'stall', stallMs: 4000 });
  await proxy.failNext(1, { fault: 'reset' });
  await runFlinkLoad({ url: sink.pg.jdbcUrl(), table: 'f_orders', rows: 12000, keys: 2500,
    partitions: 30, batch: 400, deletePct: 10, movePct: 3, replay: 2, seed: 5, payload: 300 });
  await sink.waitCaughtUp({ timeoutMs: 240000 });
  const ledger = await proxy.ledger();
  await proxy.clear();
  const r = await sink.verify('f_orders', 'order_id', 'f_orders');
  assert.ok(r.ok, String(r));
  assert.ok(ledger.throttled > 0 && ledger.resets > 0 && ledger.truncated > 0 && ledger.stalls > 0,
    `faults were injected: ${JSON.stringify(ledger)}`);
  const [stats] = await sink.pg.query(`SELECT throttled, retries FROM cosmos_sink.container_stats WHERE container = 'f_orders'`);
  assert.ok(Number(stats.throttled) > 0 && Number(stats.retries) > 0, JSON.stringify(stats));
  assert.match(sink.pg.serverLog(), /cosmos_sink: failed request to shop\/f_orders: .*activity id/s);
});

test('a wrong key: 401, state error, nothing confirmed; healed when the key file is fixed', async () => {
  await sink.pg.query(ORDERS('k_orders'));
  await sink.route('k_orders', 'k_orders', 'customer_id');
  await sink.waitCaughtUp();
  const wrong = Buffer.alloc(64, 7).toString('base64');
  writeFileSync(sink.keyFile, `${wrong}\n`);
  await sink.pg.query('SELECT pg_reload_conf()');
  await sink.pg.query(`INSERT INTO k_orders SELECT g, 'c' || g % 5, g, 'NEW', '', now() FROM generate_series(1, 300) g`);
  const st = await waitForState('error', /HTTP 401/);
  assert.ok(!st.last_error.includes(wrong) && !st.last_error.includes(EMULATOR_KEY));
  assert.ok(Number(st.lag_bytes) > 0);
  writeFileSync(sink.keyFile, `${EMULATOR_KEY}\n`);
  await sink.pg.query('SELECT pg_reload_conf()');
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('k_orders', 'order_id', 'k_orders');
  assert.ok(r.ok, String(r));
});

test('Entra ID token from a file; a rewritten file is picked up without a reload', async () => {
  await sink.pg.query(ORDERS('aad_orders'));
  await sink.route('aad_orders', 'aad_orders', 'customer_id');
  const token1 = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLW9uZQ';
  const token2 = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLXR3bw';
  const tokenFile = sink.pg.writePrivateFile('aad.token', `${token1}\n`);
  await proxy.setAadToken(token1);
  await proxy.setKey(Buffer.alloc(64, 9).toString('base64'));	// master-key signatures now fail
  await sink.pg.setConf({ 'cosmos_sink.key_file': '', 'cosmos_sink.aad_token_file': tokenFile });
  await sink.pg.query(`INSERT INTO aad_orders SELECT g, 'c' || g % 5, g, 'NEW', '', now() FROM generate_series(1, 200) g`);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  // the token is rotated by an external agent: the proxy accepts only the new one
  await proxy.setAadToken(token2);
  writeFileSync(tokenFile, `${token2}\n`);
  await sink.pg.query(`UPDATE aad_orders SET status = 'ROTATED'`);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('aad_orders', 'order_id', 'aad_orders');
  assert.ok(r.ok, String(r));
  assert.ok(!sink.pg.serverLog().includes(token1.split('.')[2]), 'token not logged');
  await proxy.setKey(EMULATOR_KEY);
  await proxy.setAadToken(null);
  await sink.pg.setConf({ 'cosmos_sink.key_file': sink.keyFile, 'cosmos_sink.aad_token_file': '' });
});

test('items Cosmos DB refuses go to dead_letters, the rest flows, retry after the fix', async () => {
  await sink.pg.query(ORDERS('p_orders'));
  await sink.route('p_orders', 'p_orders', 'customer_id');
  await proxy.set({ maxItemBytes: 3000 });
  await sink.pg.query(`INSERT INTO p_orders SELECT g, 'c' || g % 5, g, 'NEW',
    CASE WHEN g % 50 = 0 THEN repeat('b', 4000) ELSE 'small' END, now() FROM generate_series(1, 500) g`);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const parked = await sink.pg.query(`SELECT doc_id, http_status FROM cosmos_sink.dead_letters
    WHERE staging_table = 'p_orders'::regclass AND retried_at IS NULL ORDER BY doc_id::int`);
  assert.deepEqual(parked.map((p) => Number(p.doc_id)), Array.from({ length: 10 }, (_, i) => (i + 1) * 50));
  assert.ok(parked.every((p) => p.http_status === 413));
  const before = await sink.verify('p_orders', 'order_id', 'p_orders');
  assert.equal(before.missing.length, 10, String(before));
  assert.equal(before.stale.length + before.extra.length, 0, String(before));
  // the limit is raised (in real life: the document fixed); retry brings them over
  await proxy.set({ maxItemBytes: 2 * 1024 * 1024 });
  const [{ n }] = await sink.pg.query(`SELECT cosmos_sink.retry_dead_letters('p_orders') AS n`);
  assert.equal(Number(n), 10);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('p_orders', 'order_id', 'p_orders');
  assert.ok(r.ok, String(r));
});

test('a full dead_letters table pauses forwarding instead of dropping', async () => {
  await sink.pg.query('TRUNCATE cosmos_sink.dead_letters');
  await sink.pg.setConf({ 'cosmos_sink.dead_letters_max': 3 });
  await sink.pg.query(ORDERS('full_orders'));
  await sink.route('full_orders', 'full_orders', 'customer_id');
  await proxy.set({ maxItemBytes: 3000 });
  await sink.pg.query(`INSERT INTO full_orders SELECT g, 'c1', g, 'NEW', repeat('b', 4000), now() FROM generate_series(1, 5) g`);
  await sink.pg.query(`INSERT INTO full_orders VALUES (100, 'c2', 1, 'NEW', 'after', now())`);
  await waitForState('error', /dead_letters holds 3 rows/);
  const [{ count }] = await sink.pg.query('SELECT count(*) FROM cosmos_sink.dead_letters');
  assert.equal(Number(count), 3);
  await proxy.set({ maxItemBytes: 2 * 1024 * 1024 });
  await sink.pg.setConf({ 'cosmos_sink.dead_letters_max': 100 });
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const [{ total }] = await sink.pg.query('SELECT count(*) AS total FROM cosmos_sink.dead_letters');
  assert.equal(Number(total), 5, 'all five refused records are parked, none dropped');
  await sink.pg.query(`SELECT cosmos_sink.retry_dead_letters('full_orders')`);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('full_orders', 'order_id', 'full_orders');
  assert.ok(r.ok, String(r));
  await proxy.clear();
});
