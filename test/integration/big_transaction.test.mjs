// One transaction far larger than the worker's buffer: 200k rows committed at
// once stream through a 4 MB buffer (decoding waits for Cosmos DB instead of
// growing memory), and every document arrives. The rows are spread over ten
// routed tables because the emulator's queries cost O(n^2) in the size of a
// container, which would make reading one 200k-document container back take
// a quarter of an hour; the transaction, and the worker's path, are the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';

const TABLES = 10;
const ROWS_PER_TABLE = 20000;

let sink;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.buffer_size': '4MB' } });
});
after(async () => { await sink?.stop(); });

test('one transaction of 200k rows streams through a 4 MB buffer', async () => {
  const inserts = [];
  for (let t = 0; t < TABLES; t++) {
    await sink.pg.query(`CREATE TABLE big_${t} (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
      amount numeric(12,2), status text, payload text, updated_at timestamptz)`);
    await sink.route(`big_${t}`, `big_${t}`, 'customer_id');
    inserts.push(`INSERT INTO big_${t} SELECT g, 'c' || (g % 101), g, 'NEW', repeat('p', 100), '2024-01-01'
      FROM generate_series(1, ${ROWS_PER_TABLE}) g;`);
  }
  await sink.pg.psql(`BEGIN;\n${inserts.join('\n')}\nCOMMIT;`);
  const st = await sink.waitCaughtUp({ timeoutMs: 600000 });
  assert.equal(st.last_error, null);
  let total = 0;
  for (let t = 0; t < TABLES; t++) {
    const r = await sink.verify(`big_${t}`, 'order_id', `big_${t}`);
    assert.ok(r.ok, String(r));
    total += r.actualCount;
  }
  assert.equal(total, TABLES * ROWS_PER_TABLE);
});
