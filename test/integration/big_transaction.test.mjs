// One transaction far larger than the worker's buffer: it streams through,
// memory stays bounded, and every document arrives. Its own stack, because
// the emulator's queries get slower with every document it holds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';

let sink;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.buffer_size': '4MB' } });
});
after(async () => { await sink?.stop(); });

test('one transaction of 200k rows streams through a 4 MB buffer', async () => {
  await sink.pg.query(`CREATE TABLE big_orders (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
    amount numeric(12,2), status text, payload text, updated_at timestamptz)`);
  await sink.route('big_orders', 'big_orders', 'customer_id');
  await sink.pg.query(`INSERT INTO big_orders SELECT g, 'c' || (g % 101), g, 'NEW', NULL, '2024-01-01'
    FROM generate_series(1, 200000) g`);
  await sink.waitCaughtUp({ timeoutMs: 600000 });
  const r = await sink.verify('big_orders', 'order_id', 'big_orders');
  assert.ok(r.ok, String(r));
  assert.equal(r.expectedCount, 200000);
});

