// The demo behind test/demo: a throwaway PostgreSQL with cosmos_sink, the
// local Cosmos emulator over verified TLS, a Flink-style JDBC load into
// orders_staging, live progress from cosmos_sink.status, and a final exact
// comparison of every document with the staging table.
import { startSink } from './lib/sink.mjs';
import { startFlinkLoad } from './lib/flink.mjs';
import { startFaultProxy } from './lib/fault-proxy.mjs';
import { sleep } from './lib/util.mjs';

const seconds = Number(process.argv[2] || 20);
const rate = Number(process.argv[3] || 5000);

function line(s) { process.stdout.write(`${s}\n`); }

line(`cosmos_sink demo: ${seconds} s of Flink-style upserts and deletes at ${rate} changes/s`);
line('starting the Cosmos emulator (HTTPS, generated CA) and a throwaway PostgreSQL ...');
const sink = await startSink();
// the test proxy in front of the emulator checks signatures and charges realistic RU
const proxy = await startFaultProxy({ emulator: sink.emu });
await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
try {
  await sink.pg.query(`CREATE TABLE orders_staging (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
    amount numeric(12,2), status text, payload text, updated_at timestamptz)`);
  await sink.route('orders_staging', 'orders', 'customer_id');
  line(`routed public.orders_staging -> shop/orders (partition key /customer_id), endpoint ${proxy.endpoint} (RU-charging proxy in front of the emulator)`);
  line('');
  line(' time | changes sent | rows in table | state      | lag_bytes | lag_s | in flight | docs acked | RU total');

  const load = await startFlinkLoad({ url: sink.pg.jdbcUrl(), table: 'orders_staging',
    rows: seconds * rate, keys: Math.max(1000, seconds * rate / 5), partitions: 200, batch: 500,
    rate, deletePct: 10, movePct: 2, replay: 3, seed: 42, payload: 800 });
  let sent = 0;
  load.child.stderr.on('data', (d) => {
    const m = [...String(d).matchAll(/changes=(\d+)/g)];
    if (m.length) sent = Number(m[m.length - 1][1]);
  });
  let finished = false;
  const done = load.done.then((s) => { finished = true; sent = s.changes; return s; });
  const t0 = Date.now();
  while (!finished) {
    await sleep(1000);
    const [st] = await sink.pg.query('SELECT * FROM cosmos_sink.status');
    const [{ n }] = await sink.pg.query('SELECT count(*)::int AS n FROM orders_staging');
    const [cs] = await sink.pg.query('SELECT upserts + deletes AS acked, ru_total FROM cosmos_sink.container_stats');
    line(`${String(Math.round((Date.now() - t0) / 1000)).padStart(4)}s | ${String(sent).padStart(12)} | ${String(n).padStart(13)} | ${st.state.padEnd(10)} | ${String(st.lag_bytes).padStart(9)} | ${Number(st.lag_seconds).toFixed(2).padStart(5)} | ${String(st.in_flight_requests).padStart(9)} | ${String(cs.acked).padStart(10)} | ${Number(cs.ru_total).toFixed(0)}`);
  }
  const summary = await done;
  line(`load finished: ${summary.changes} changes (${summary.deletes} deletes, ${summary.replayed_batches} replayed batches) in ${summary.seconds.toFixed(1)} s`);
  const st = await sink.waitCaughtUp();
  line('');
  line('SELECT * FROM cosmos_sink.status;');
  for (const [k, v] of Object.entries(st)) if (k !== 'passed') line(`  ${k.padEnd(18)} ${v instanceof Date ? v.toISOString() : v}`);
  line('');
  line('SELECT * FROM cosmos_sink.container_stats;');
  const [cs] = await sink.pg.query('SELECT * FROM cosmos_sink.container_stats');
  for (const [k, v] of Object.entries(cs)) line(`  ${k.padEnd(18)} ${v instanceof Date ? v.toISOString() : v}`);
  line('');
  const r = await sink.verify('orders_staging', 'order_id', 'orders');
  line(r.ok ? `VERIFIED: all ${r.expectedCount} documents in shop/orders equal to_jsonb(row) || id of orders_staging (0 missing, 0 stale, 0 extra)`
    : `VERIFICATION FAILED: ${r.summary}`);
  process.exitCode = r.ok ? 0 : 1;
} finally {
  await proxy.stop();
  await sink.stop();
}
