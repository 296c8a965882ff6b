// One transaction far larger than the worker's buffer: 200k rows committed at
// once stream through a 4 MB buffer (the reorder buffer spills to disk, decoding
// waits for Cosmos DB instead of growing memory), and every document arrives. The rows are spread over ten
// routed tables because the emulator's queries cost O(n^2) in the size of a
// container, which would make reading one 200k-document container back take
// a quarter of an hour; the transaction, and the worker's path, are the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { sampleMemory } from '../lib/memory.mjs';

const TABLES = 10;
const ROWS_PER_TABLE = 20000;

let sink;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.buffer_size': '4MB' } });
});
after(async () => { await sink?.stop(); });

test('one transaction of 200k rows streams through a 4 MB buffer', async (ctx) => {
  const inserts = [];
  for (let t = 0; t < TABLES; t++) {
    await sink.pg.query(`CREATE TABLE big_${t} (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
      amount numeric(12,2), status text, payload text, updated_at timestamptz)`);
    await sink.route(`big_${t}`, `big_${t}`, 'customer_id');
    inserts.push(`INSERT INTO big_${t} SELECT g, 'c' || (g % 101), g, 'NEW', repeat('p', 100), '2024-01-01'
      FROM generate_series(1, ${ROWS_PER_TABLE}) g;`);
  }
  const { worker_pid: pid } = await sink.status();
  const mem = sampleMemory(pid);
  await sink.pg.psql(`BEGIN;\n${inserts.join('\n')}\nCOMMIT;`);
  const st = await sink.waitCaughtUp({ timeoutMs: 600000 });
  const m = mem.stop();
  assert.equal(st.last_error, null);
  assert.equal(st.worker_pid, pid, 'the same worker did it all');
  // the reorder buffer had half of the 4 MB (not logical_decoding_work_mem's
  // 64 MB, which would have held these ~50 MB of rows): the transaction spilled
  const [slot] = await sink.pg.query(`SELECT spill_txns, spill_bytes FROM pg_stat_replication_slots
    WHERE slot_name = 'cosmos_sink'`);
  const spilledMb = Number(slot.spill_bytes) / 1048576;
  assert.ok(Number(slot.spill_txns) >= 1 && spilledMb > 20, `spilled: ${JSON.stringify(slot)}`);
  // What must hold: the worker's memory does not grow with the transaction,
  // so its peak must stay under the transaction's own size (its spilled
  // bytes, 52 MB). Held in memory the transaction costs far more: 174 MB of
  // private memory measured with a 256 MB buffer (which keeps it decoded).
  // Bounded, the peak grows by the buffer plus costs that do not depend on
  // the transaction's size (TLS connections and bodies in flight, catalog
  // caches, PostgreSQL's restore batches of 4096 changes, memory malloc keeps
  // after a free): 22-24 MB measured on 2-core Debian 12 machines, which
  // flipped the former fixed 24 MB bound. Room on both sides: > 2x and > 3x.
  // VmHWM is the kernel's exact peak (sampling could miss it); its parts
  // (private, shared memory, mapped files) come from the samples.
  const grown = m.peak.hwm - m.before.hwm;
  const parts = `private +${m.grown.anon.toFixed(1)}, shared memory +${m.grown.shmem.toFixed(1)}, files +${m.grown.file.toFixed(1)}`;
  ctx.diagnostic(`worker peak RSS grew by ${grown.toFixed(1)} MB (${parts}); the transaction spilled ${spilledMb.toFixed(1)} MB`);
  assert.ok(grown < spilledMb,
    `peak RSS grew by ${grown.toFixed(1)} MB (from ${m.before.hwm.toFixed(1)} MB; ${parts}): not under the ${spilledMb.toFixed(1)} MB the transaction spilled`);
  let total = 0;
  for (let t = 0; t < TABLES; t++) {
    const r = await sink.verify(`big_${t}`, 'order_id', `big_${t}`);
    assert.ok(r.ok, String(r));
    total += r.actualCount;
  }
  assert.equal(total, TABLES * ROWS_PER_TABLE);
});
