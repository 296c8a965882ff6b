// cosmos_sink.skip_unchanged: an UPDATE whose new row is byte for byte its old
// row (a Flink replay after a restore, an upsert that re-emits a row) is not
// sent; it costs no RU, counts in container_stats.skipped and lets the slot
// move on. resync() and retry_dead_letters(), whose touches change nothing by
// design, still send theirs. Writes go through the RU-charging fault proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { waitFor } from '../lib/util.mjs';

let sink;
let proxy;
before(async () => {
  sink = await startSink();
  proxy = await startFaultProxy({ emulator: sink.emu });
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
  await sink.pg.query(`CREATE TABLE su_orders (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
    amount numeric(12,2), note text, payload text)`);
  await sink.route('su_orders', 'su_orders', 'customer_id');
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

const ROWS = 5000;
const PER_TXN = 500;

/** Flink's JDBC upsert of rows [from, to] as one transaction; the values depend only on the key. */
async function flinkUpsert(from, to) {
  await sink.pg.query(`INSERT INTO su_orders
    SELECT g, 'c' || g % 50, g * 1.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END, repeat(md5(g::text), 8)
      FROM generate_series($1::bigint, $2::bigint) g
    ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, amount = EXCLUDED.amount,
      note = EXCLUDED.note, payload = EXCLUDED.payload`, [from, to]);
}

/** Every row, 10 transactions of 500, then wait until the slot passed them. */
async function pass() {
  await proxy.reset();
  for (let from = 1; from <= ROWS; from += PER_TXN) await flinkUpsert(from, from + PER_TXN - 1);
  const [{ lsn }] = await sink.pg.query('SELECT pg_current_wal_lsn() AS lsn');
  await sink.waitCaughtUp();
  return { ...(await proxy.ledger()), endLsn: lsn };
}

async function stats() {
  const [s] = await sink.pg.query(`SELECT upserts, skipped FROM cosmos_sink.container_stats WHERE container = 'su_orders'`);
  return { upserts: Number(s.upserts), skipped: Number(s.skipped) };
}

/**
 * Change the setting and wait until the worker decodes with it: a reload
 * reaches the worker asynchronously, so touch one row unchanged until the
 * counter that the new value moves does move.
 */
async function setSkipUnchanged(on) {
  await sink.pg.setConf({ 'cosmos_sink.skip_unchanged': on ? 'on' : 'off' });
  const counter = on ? 'skipped' : 'upserts';
  await waitFor(async () => {
    const before = (await stats())[counter];
    await sink.pg.query('UPDATE su_orders SET amount = amount WHERE order_id = 1');
    await sink.waitCaughtUp();
    return (await stats())[counter] > before;
  }, { timeoutMs: 30000, what: `worker decoding with skip_unchanged ${on ? 'on' : 'off'}` });
}

test('a replay of unchanged rows costs no RU; with the setting off it costs what the first pass did', async () => {
  const first = await pass();
  assert.equal(first.upserts, ROWS, JSON.stringify(first));
  assert.ok(first.ru > 0);
  assert.ok((await sink.verify('su_orders', 'order_id', 'su_orders')).ok);

  // on (the default): nothing reaches Cosmos DB, every change is counted, the slot moves past
  // them (waitCaughtUp: confirmed_lsn passed the replay, nothing in flight)
  const s0 = await stats();
  const replayOn = await pass();
  const s1 = await stats();
  assert.equal(replayOn.writeRequests, 0, JSON.stringify(replayOn));
  assert.equal(replayOn.ru, 0);
  assert.equal(s1.skipped - s0.skipped, ROWS);
  assert.equal(s1.upserts - s0.upserts, 0);
  const [{ passed }] = await sink.pg.query(`SELECT confirmed_lsn >= $1::pg_lsn AS passed FROM cosmos_sink.status`, [replayOn.endLsn]);
  assert.ok(passed, 'the slot was confirmed past the replay');

  // off: every change is an upsert again, charged as the first pass was (same documents, and the
  // proxy charges an upsert by the size of its document)
  await setSkipUnchanged(false);
  const s2 = await stats();
  const replayOff = await pass();
  const s3 = await stats();
  assert.equal(replayOff.upserts, ROWS, JSON.stringify(replayOff));
  assert.equal(replayOff.ru, first.ru);
  assert.equal(s3.skipped - s2.skipped, 0);
  assert.equal(s3.upserts - s2.upserts, ROWS);
  await setSkipUnchanged(true);
  assert.ok((await sink.verify('su_orders', 'order_id', 'su_orders')).ok);
});

test('a changed row in an otherwise unchanged replay is sent, and only it', async () => {
  await sink.pg.query(`UPDATE su_orders SET note = 'changed by the job' WHERE order_id = 42`);
  await sink.waitCaughtUp();
  const s0 = await stats();
  await proxy.reset();
  // the replay re-emits 1..500 as they were, which changes row 42 back
  await flinkUpsert(1, PER_TXN);
  await sink.waitCaughtUp();
  const l = await proxy.ledger();
  const s1 = await stats();
  assert.equal(s1.upserts - s0.upserts, 1, 'row 42 changed back');
  assert.equal(s1.skipped - s0.skipped, PER_TXN - 1);
  assert.equal(l.upserts, 1);
  assert.ok((await sink.verify('su_orders', 'order_id', 'su_orders')).ok);
});

test('a document changed or deleted in Cosmos DB is not repaired by a skipped change; resync() repairs it', async () => {
  const container = proxy.client().database('shop').container('su_orders');
  const { resource: doc } = await container.item('7', 'c7').read();
  await container.item('7', 'c7').replace({ ...doc, note: 'changed by someone else' });
  await container.item('8', 'c8').delete();

  await flinkUpsert(1, PER_TXN);
  await sink.waitCaughtUp();
  const r = await sink.verify('su_orders', 'order_id', 'su_orders');
  assert.equal(r.stale.length, 1, String(r));
  assert.equal(r.missing.length, 1, String(r));

  // resync() touches every row with an UPDATE that changes nothing: marked, so sent
  await sink.pg.query(`SELECT cosmos_sink.resync('su_orders')`);
  await waitFor(async () => (await sink.pg.query(`SELECT finished_at IS NOT NULL AS done
    FROM cosmos_sink.resyncs WHERE staging_table = 'su_orders'::regclass`))[0].done,
  { timeoutMs: 120000, what: 'resync finished' });
  await sink.waitCaughtUp();
  const after = await sink.verify('su_orders', 'order_id', 'su_orders');
  assert.ok(after.ok, String(after));
});

test('retry_dead_letters() re-sends a row whose touch changes nothing', async () => {
  // a parked upsert of row 9, whose document is gone (as if Cosmos DB had refused it)
  await proxy.client().database('shop').container('su_orders').item('9', 'c9').delete();
  await sink.pg.query(`INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, error)
    VALUES ('su_orders', '0/1', 'upsert', '9', '["c9"]', 'refused')`);
  const s0 = await stats();
  const [{ n }] = await sink.pg.query(`SELECT cosmos_sink.retry_dead_letters('su_orders') AS n`);
  assert.equal(Number(n), 1);
  await sink.waitCaughtUp();
  assert.equal((await stats()).upserts - s0.upserts, 1);
  const r = await sink.verify('su_orders', 'order_id', 'su_orders');
  assert.ok(r.ok, String(r));
  // and the marker ends with its transaction: the same touch by anyone else is left out
  await sink.pg.query('UPDATE su_orders SET order_id = order_id WHERE order_id = 9');
  await sink.waitCaughtUp();
  const s1 = await stats();
  assert.equal(s1.upserts - s0.upserts, 1);
});
