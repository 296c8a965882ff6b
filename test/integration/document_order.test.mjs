// One Cosmos DB document written by two routes keeps its order: the newest
// committed state wins whichever route wrote it (issue 13, item 2). Two
// partitions of one table routed to one container, rows moved from one to the
// other under 30% 429s; and remove_route() + add_route() of a table while a
// write of the old route is still being retried after a 429.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { waitFor } from '../lib/util.mjs';

let sink;
let proxy;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.request_timeout_ms': 5000 } });
  proxy = await startFaultProxy({ emulator: sink.emu });
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

test('rows moved between two partitions routed to one container under 429s: none is lost', async () => {
  await sink.pg.query(`CREATE TABLE moved (order_id bigint NOT NULL, customer_id text NOT NULL,
    region text NOT NULL, status text, PRIMARY KEY (order_id, customer_id, region)) PARTITION BY LIST (region)`);
  await sink.pg.query(`CREATE TABLE moved_a PARTITION OF moved FOR VALUES IN ('a')`);
  await sink.pg.query(`CREATE TABLE moved_b PARTITION OF moved FOR VALUES IN ('b')`);
  await sink.route('moved_a', 'moved', 'customer_id', { idColumn: 'order_id' });
  await sink.route('moved_b', 'moved', 'customer_id', { idColumn: 'order_id' });
  await sink.pg.query(`INSERT INTO moved SELECT g, 'c' || g % 7, 'a', 'NEW' FROM generate_series(1, 1000) g`);
  await sink.waitCaughtUp();
  await proxy.reset();
  await proxy.set({ seed: 13, throttleRate: 0.3, retryAfterMs: 30 });
  // each row: a delete through moved_a's route, then an upsert through moved_b's
  for (let lo = 1; lo <= 1000; lo += 100) {
    await sink.pg.query(`UPDATE moved SET region = 'b', status = 'MOVED' WHERE order_id BETWEEN $1 AND $2`,
      [lo, lo + 99]);
  }
  await sink.waitCaughtUp({ timeoutMs: 120000 });
  const ledger = await proxy.ledger();
  await proxy.clear();
  assert.ok(ledger.throttled > 0, `429s were injected: ${JSON.stringify(ledger)}`);
  const r = await sink.verify('moved', 'order_id', 'moved');
  assert.ok(r.ok, String(r));
});

test('remove_route() + add_route() while the old route retries after a 429: the new state wins', async () => {
  await sink.pg.query(`CREATE TABLE rekeyed (order_id bigint PRIMARY KEY, customer_id text NOT NULL, status text)`);
  await sink.route('rekeyed', 'rekeyed', 'customer_id');
  await proxy.reset();
  // every write of the old route answered 429 with a long wait...
  await proxy.set({ throttleRate: 1, retryAfterMs: 3000 });
  await sink.pg.query(`INSERT INTO rekeyed SELECT g, 'c' || g % 5, 'OLD' FROM generate_series(1, 200) g`);
  await waitFor(async () => (await proxy.ledger()).throttled > 0, { timeoutMs: 30000, what: 'a 429' });
  // ...then the service recovers while the old route waits out its 429
  await proxy.set({ throttleRate: 0 });
  await sink.pg.query(`SELECT cosmos_sink.remove_route('rekeyed')`);
  await sink.route('rekeyed', 'rekeyed', 'customer_id');
  await sink.pg.query(`UPDATE rekeyed SET status = 'NEW'`);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  await proxy.clear();
  const r = await sink.verify('rekeyed', 'order_id', 'rekeyed');
  assert.ok(r.ok, String(r));
});
