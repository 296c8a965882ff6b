// Failover (issue 15): a primary and a streaming standby on this machine
// (pg_basebackup -R, both as the postgres user), a Flink-style load with
// replays and deletes, the primary killed with kill -9 mid-stream (with a
// request to Cosmos DB in flight), the standby promoted, the load finished
// against the new primary — and Cosmos DB equals the new primary's staging
// table exactly. Three failovers, a new standby made from the new primary
// each time.
// - PostgreSQL 17 and later: the worker's slot is a failover slot,
//   synchronised to the standby; the promoted standby's worker goes on from it
//   by itself. The standby comes first: nothing reaches Cosmos DB before the
//   standby of synchronized_standby_slots has its WAL.
// - PostgreSQL 15/16: the promoted standby has no slot; the worker says so
//   and waits for recover(), which re-sends every table.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { startStandby } from '../lib/pg.mjs';
import { sleep, waitFor } from '../lib/util.mjs';

const TABLE = 'fo_orders';
const KEYS = 1500;
const PER_BATCH = 60;
const DELETES_PER_BATCH = 6;
const FAILOVERS = 3;

let sink;
let failoverSlots;
const retired = []; // killed primaries, removed at the end
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.max_in_flight': 4, 'cosmos_sink.batch_max_ops': 20 } });
  const [{ v }] = await sink.pg.query('SHOW server_version_num').then((r) => r.map((x) => ({ v: Number(x.server_version_num) })));
  failoverSlots = v >= 170000;
  await sink.pg.query(`CREATE TABLE ${TABLE} (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
    status text, amount numeric(12,2), batch int)`);
  await sink.route(TABLE, TABLE, 'customer_id');
});
after(async () => {
  for (const s of retired) await s.cleanup().catch(() => {});
  await sink?.stop();
});

// Batch n is a pure function of n (so a replay writes the same): upserts of
// PER_BATCH keys, some moving to another customer (partition key), and deletes
function batchSql(n) {
  const rows = [];
  for (let j = 0; j < PER_BATCH; j++) {
    const k = (n * 37 + j * 13) % KEYS + 1;
    rows.push(`(${k}, 'c${(k + (j % 5 === 0 ? n : 0)) % 11}', 'B${n}', ${(n * 7 + j) % 1000}.50, ${n})`);
  }
  const dels = [];
  for (let j = 0; j < DELETES_PER_BATCH; j++) dels.push((n * 101 + j * 211) % KEYS + 1);
  return `INSERT INTO ${TABLE} VALUES ${rows.join(', ')}
      ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
        amount = EXCLUDED.amount, batch = EXCLUDED.batch;
    DELETE FROM ${TABLE} WHERE order_id IN (${dels.join(', ')});`;
}

// Flink's JDBC sink, at least once: a batch whose commit was not confirmed is
// written again (to whichever server is the primary by then)
function startWriter(first) {
  const w = { next: first, stop: false, written: 0 };
  w.done = (async () => {
    while (!w.stop) {
      try {
        await sink.pg.psql(`BEGIN;\n${batchSql(w.next)}\nCOMMIT;\n`, { timeoutMs: 20000 });
        w.next++;
        w.written++;
      } catch {
        await sleep(200); // the server is gone: replay the batch once there is a primary
      }
      await sleep(40);
    }
  })();
  return w;
}

async function slotOn(server) {
  const rows = await server.query("SELECT * FROM pg_replication_slots WHERE slot_name = 'cosmos_sink'");
  return rows[0];
}

// A failed wait, with the worker's status, the slot and the worker's log lines
async function explain(e) {
  const st = await sink.status().catch(() => null);
  const slot = await slotOn(sink.pg).catch(() => null);
  const log = sink.pg.serverLog().split('\n').filter((l) => /cosmos_sink|ERROR|FATAL|slot/.test(l)).slice(-25).join('\n');
  e.message += `\nstatus: ${JSON.stringify(st)}\nslot: ${JSON.stringify(slot)}\nlog:\n${log}`;
  return e;
}

async function untilResyncsDone() {
  await waitFor(async () => (await sink.pg.query(
    `SELECT coalesce(bool_and(finished_at IS NOT NULL AND coalesce(sweep, 'done') NOT IN ('pending', 'running')), true)
       AS done FROM cosmos_sink.resyncs`))[0].done,
  { timeoutMs: 120000, what: 'recover() re-sent every table and swept its container' });
}

test('a standby\'s worker does not forward: state standby', async () => {
  const standby = await startStandby(sink.pg, { slot: 'standby0' });
  try {
    const st = await waitFor(async () => {
      const [s] = await standby.query('SELECT state FROM cosmos_sink.status');
      return s?.state === 'standby' && s;
    }, { timeoutMs: 30000, what: 'state standby on the standby' });
    assert.equal(st.state, 'standby');
  } finally {
    await standby.cleanup();
    await sink.pg.query("SELECT pg_drop_replication_slot('standby0')");
  }
});

test('the standby comes first: nothing reaches Cosmos DB before the standby has the WAL', async (t) => {
  if (!failoverSlots) { t.skip('failover slots need PostgreSQL 17'); return; }
  const standby = await startStandby(sink.pg, { slot: 'standby_first' });
  try {
    // a standby streams while synchronized_standby_slots is empty: on reload the worker names the fix
    const since = sink.pg.logOffset();
    await waitFor(async () => {
      await sink.pg.setConf({}); // a reload
      await sleep(1000);
      return /synchronized_standby_slots is empty.*synchronized_standby_slots = 'standby_first'/.test(sink.pg.serverLog({ since }));
    }, { timeoutMs: 30000, what: 'a WARNING naming synchronized_standby_slots' });
    await sink.pg.setConf({ 'synchronized_standby_slots': 'standby_first' });
    await sink.pg.query(`INSERT INTO ${TABLE} VALUES (900001, 'c1', 'before', 1, 0)`);
    await sink.waitCaughtUp();
    await standby.stop();
    await sink.pg.query(`INSERT INTO ${TABLE} VALUES (900002, 'c1', 'while the standby is down', 1, 0)`);
    await sleep(4000);
    const c = sink.emu.client();
    const item = c.database('shop').container(TABLE).item('900002', 'c1');
    assert.equal((await item.read()).statusCode, 404, 'not forwarded while the standby lacks it');
    const st = await sink.status();
    assert.match(st.last_error ?? '', /synchronized_standby_slots/);
    await standby.start();
    await waitFor(async () => (await item.read()).statusCode === 200, { timeoutMs: 60000, what: 'forwarded once the standby has it' });
    c.dispose();
  } finally {
    await sink.pg.setConf({ 'synchronized_standby_slots': null });
    await standby.cleanup();
    await sink.pg.query("SELECT pg_drop_replication_slot('standby_first')");
    await sink.pg.query(`DELETE FROM ${TABLE} WHERE order_id > 900000`);
  }
});

test(`${FAILOVERS} failovers under load (kill -9 of the primary, standby promoted) end exact`, async () => {
  let next = 1;
  for (let i = 1; i <= FAILOVERS; i++) {
    const slot = `standby${i}`;
    const standby = await startStandby(sink.pg, { slot });
    if (failoverSlots) await sink.pg.setConf({ 'synchronized_standby_slots': slot });
    const writer = startWriter(next);
    if (failoverSlots) {
      // a synchronised slot stays temporary (and promotion drops it) until the
      // primary's slot moved past where the copy began: the load moves it
      await waitFor(async () => {
        const sl = await slotOn(standby);
        return sl?.synced === true && sl.temporary === false;
      }, { timeoutMs: 60000, what: 'the slot synchronised to the standby' }).catch(async (e) => { throw await explain(e); });
    }
    // mid-stream, with a request to Cosmos DB in flight
    await waitFor(async () => writer.written >= 15 && Number((await sink.status()).in_flight_requests) > 0,
      { timeoutMs: 60000, intervalMs: 20, what: 'a request in flight mid-stream' });
    await sink.pg.killPostmaster9();
    retired.push(sink.pg);
    await standby.promote();
    sink.pg = standby;
    await waitFor(async () => writer.written >= 30 + 15 * (i - 1), { timeoutMs: 60000, what: 'the load going on against the new primary' }).catch(() => {});
    writer.stop = true;
    await writer.done;
    next = writer.next;

    if (failoverSlots) {
      await waitFor(async () => ['streaming', 'idle'].includes((await sink.status()).state),
        { timeoutMs: 60000, what: 'the promoted standby forwarding from the synchronised slot' })
        .catch(async (e) => { throw await explain(e); });
    } else {
      const st = await waitFor(async () => {
        const s = await sink.status();
        return s.state === 'error' && /recover\(\)/.test(s.last_error ?? '') && s;
      }, { timeoutMs: 60000, what: 'the lost slot named with recover()' });
      assert.match(st.last_error, /is gone/);
      await sink.pg.query('SELECT cosmos_sink.recover()');
      await untilResyncsDone();
    }
    await sink.waitCaughtUp({ timeoutMs: 180000 });
    const r = await sink.verify(TABLE, 'order_id', TABLE);
    assert.ok(r.ok, `after failover ${i}: ${r}`);
  }
});
