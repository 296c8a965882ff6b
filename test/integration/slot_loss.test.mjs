// A lost replication slot is never made again silently (issue 13 item 1).
// The slot is dropped while forwarding is off (cosmos_sink.enabled = off must
// release it), changes are written in the gap, forwarding comes back: the
// worker must stop with an error naming recover() and forward nothing (no new
// slot either); recover() makes the slot again and re-sends every routed
// table, after which every row's document is exact. The same holds for a slot
// made again by hand (it starts past where cosmos_sink left off).
// Rows deleted in the gap: recover() sweeps each routed container and deletes
// the documents no routed row has (two tables sharing one container keep
// each other's documents); recover(delete_missing => false) leaves them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { upsertDocuments } from '../lib/emulator.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { startSink } from '../lib/sink.mjs';
import { sleep, waitFor } from '../lib/util.mjs';
import { verifyContainer } from '../lib/verify.mjs';

let sink;
before(async () => { sink = await startSink(); });
after(async () => { await sink?.stop(); });

async function slot() {
  const [s] = await sink.pg.query("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = 'cosmos_sink'");
  return s;
}

async function docCount(container) {
  const c = sink.emu.client();
  try {
    const { resources } = await c.database('shop').container(container).items
      .query('SELECT VALUE COUNT(1) FROM c').fetchAll();
    return resources[0];
  } finally {
    c.dispose();
  }
}

// Forwarding off: the worker lets go of the slot (README: it leaves it alone)
async function disableForwarding() {
  await sink.pg.setConf({ 'cosmos_sink.enabled': 'off' });
  await waitFor(async () => (await slot())?.active === false, { timeoutMs: 30000, what: 'slot released' });
}

// recover()'s re-sends and sweeps are over (written so that it also runs
// against a build without the sweep, to show what it fixes)
async function waitRecovered() {
  await waitFor(async () => (await sink.pg.query(
    `SELECT bool_and(finished_at IS NOT NULL
                     AND COALESCE(to_jsonb(s) ->> 'sweep', 'done') NOT IN ('pending', 'running')) AS done
       FROM cosmos_sink.resyncs s`))[0].done,
  { timeoutMs: 60000, what: 'recover() re-sent every routed table and swept its container' });
  await sink.waitCaughtUp();
}

// Both tables routed to container "shared": the container must hold exactly their rows
function verifyShared() {
  return verifyContainer({
    pg: sink.pg, endpoint: sink.emu.endpoint, caFile: sink.emu.caFile, database: 'shop', container: 'shared',
    expectedSql: `SELECT to_jsonb(t) || jsonb_build_object('id', t.id::text) AS doc FROM shared_a t
                  UNION ALL SELECT to_jsonb(t) || jsonb_build_object('id', t.id::text) FROM shared_b t`,
  });
}

async function expectLostState(container, before) {
  const st = await waitFor(async () => {
    const s = await sink.status();
    return s.state === 'error' && /recover\(\)/.test(s.last_error ?? '') && s;
  }, { timeoutMs: 30000, what: 'state error naming recover()' });
  await sleep(3000);
  assert.equal(await slot(), undefined, 'the worker made no slot of its own');
  assert.equal(await docCount(container), before, 'nothing was forwarded');
  return st;
}

// Item 4: the first add_route() makes the slot, which waits for running
// transactions; a second add_route() meanwhile must wait for it too, or a
// change committed right after it returns precedes the slot's consistent point
test('add_route() returns only once the slot can decode, even while another add_route() makes it', async () => {
  await sink.pg.query('CREATE TABLE first_route (id int PRIMARY KEY, k text NOT NULL)');
  await sink.pg.query('CREATE TABLE second_route (id int PRIMARY KEY, k text NOT NULL)');
  await sink.pg.query('CREATE TABLE busy (id int)');
  const holder = await sink.pg.client();
  await holder.query('BEGIN');
  await holder.query('INSERT INTO busy VALUES (1)');  // a running transaction with an xid
  let firstDone = false;
  const first = sink.route('first_route', 'first_route', 'k').then(() => { firstDone = true; });
  await waitFor(async () => (await sink.pg.query(
    "SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'cosmos_sink'"))[0].n === 1,
  { what: 'the first add_route() making the slot' });
  let secondDone = false;
  const second = sink.route('second_route', 'second_route', 'k').then(async () => {
    secondDone = true;
    await sink.pg.query("INSERT INTO second_route VALUES (1, 'right after add_route')");
  });
  await sleep(2000);
  assert.equal(firstDone, false, 'the slot waits for the running transaction');
  assert.equal(secondDone, false, 'the second add_route() waits for the slot being made');
  await holder.query('COMMIT');
  await holder.end();
  await Promise.all([first, second]);
  await sink.waitCaughtUp();
  assert.equal(await docCount('second_route'), 1, 'the change committed right after add_route() arrived');
});

test('a slot dropped while forwarding is off stops the worker until recover()', async () => {
  await sink.pg.query(`CREATE TABLE lost_orders (order_id bigint PRIMARY KEY, customer_id text NOT NULL, note text)`);
  await sink.route('lost_orders', 'lost_orders', 'customer_id');
  await sink.pg.query(`INSERT INTO lost_orders SELECT g, 'c' || g % 7, 'first' FROM generate_series(1, 100) g`);
  // two tables, one container: neither's sweep may take the other's documents
  await sink.pg.query(`CREATE TABLE shared_a (id int PRIMARY KEY, k text NOT NULL, v text)`);
  await sink.pg.query(`CREATE TABLE shared_b (id numeric PRIMARY KEY, k text NOT NULL, w int)`);
  await sink.route('shared_a', 'shared', 'k');
  await sink.route('shared_b', 'shared', 'k');
  await sink.pg.query(`INSERT INTO shared_a SELECT g, 'k' || g % 5, 'a' FROM generate_series(1, 50) g`);
  await sink.pg.query(`INSERT INTO shared_b SELECT 1000 + g, 'k' || g % 5, g FROM generate_series(1, 50) g`);
  await sink.waitCaughtUp();
  assert.equal(await docCount('lost_orders'), 100);
  assert.equal(await docCount('shared'), 100);

  await disableForwarding();
  await sink.pg.query("SELECT pg_drop_replication_slot('cosmos_sink')");
  // the gap: inserts and updates the old slot would have carried
  await sink.pg.query(`INSERT INTO lost_orders SELECT g, 'c' || g % 7, 'in the gap' FROM generate_series(101, 150) g`);
  await sink.pg.query(`UPDATE lost_orders SET note = 'updated in the gap' WHERE order_id <= 10`);
  // deletes in the gap: rows the old slot would have deleted documents of
  await sink.pg.query(`DELETE FROM lost_orders WHERE order_id BETWEEN 41 AND 60 OR order_id IN (101, 102)`);
  await sink.pg.query(`DELETE FROM shared_a WHERE id <= 10`);
  await sink.pg.query(`DELETE FROM shared_b WHERE id <= 1005`);
  // a row that moved to another partition key: its old document is gone too
  await sink.pg.query(`UPDATE shared_a SET k = 'moved' WHERE id = 20`);
  // a document no route wrote (recover() treats a routed container as the routes' own)
  await upsertDocuments(sink.emu.endpoint, sink.emu.caFile, 'shop', 'shared', [{ id: 'foreign-1', k: 'k1' }]);
  await sink.pg.setConf({ 'cosmos_sink.enabled': null });

  const st = await expectLostState('lost_orders', 100);
  assert.match(st.last_error, /is gone: changes committed after .* may be missing/);
  // add_route() does not paper over it either
  await sink.pg.query('CREATE TABLE lost_other (id int PRIMARY KEY, k text NOT NULL)');
  await assert.rejects(sink.route('lost_other', 'lost_other', 'k'), /recover\(\)/);

  const [{ recover }] = await sink.pg.query('SELECT cosmos_sink.recover()');
  assert.equal(Number(recover), 5, "every routed table is re-sent");
  await waitRecovered();
  const r = await sink.verify('lost_orders', 'order_id', 'lost_orders');
  assert.ok(r.ok, String(r));
  assert.equal(r.extra.length, 0, 'no document of a row deleted in the gap is left');
  const shared = await verifyShared();
  assert.ok(shared.ok, String(shared));
  assert.equal(shared.actualCount, 85, "the other table's documents are kept");
  // one sweep per container, by its first route, counting what it did
  const sweeps = await sink.pg.query(
    'SELECT staging_table::text AS t, sweep, docs_checked::int, docs_deleted::int FROM cosmos_sink.resyncs ORDER BY 1');
  assert.deepEqual(sweeps.map((x) => [x.t, x.sweep, x.docs_deleted]), [
    ['first_route', 'done', 0], ['lost_orders', 'done', 20], ['second_route', 'done', 0],
    ['shared_a', 'done', 17], ['shared_b', null, 0]]);
  // the whole container was listed (the re-sent document of the moved row may come after the listing)
  assert.ok(sweeps.find((x) => x.t === 'shared_a').docs_checked >= 101, JSON.stringify(sweeps));
  // and the stream goes on from the new slot
  await sink.pg.query(`INSERT INTO lost_orders SELECT g, 'c' || g % 7, 'after' FROM generate_series(151, 160) g`);
  await sink.waitCaughtUp();
  assert.equal(await docCount('lost_orders'), 160 - 22, 'every row but the 22 deleted in the gap');
});

test('a slot made again by hand is refused too', async () => {
  await disableForwarding();
  await sink.pg.query("SELECT pg_drop_replication_slot('cosmos_sink')");
  await sink.pg.query(`UPDATE lost_orders SET note = 'lost under a new slot' WHERE order_id > 150`);
  await sink.pg.query(`DELETE FROM lost_orders WHERE order_id = 151`);
  await sink.pg.query("SELECT 1 FROM pg_create_logical_replication_slot('cosmos_sink', 'cosmos_sink')");
  await sink.pg.setConf({ 'cosmos_sink.enabled': null });
  const st = await waitFor(async () => {
    const s = await sink.status();
    return s.state === 'error' && /made again/.test(s.last_error ?? '') && s;
  }, { timeoutMs: 30000, what: 'state error: slot made again' });
  assert.match(st.last_error, /recover\(\)/);
  // delete_missing => false: the documents of rows deleted in the gap stay
  await sink.pg.query('SELECT cosmos_sink.recover(delete_missing => false)');
  await waitRecovered();
  const kept = await sink.verify('lost_orders', 'order_id', 'lost_orders');
  assert.deepEqual([kept.missing.length, kept.stale.length, kept.extra.map((x) => x.id)], [0, 0, ['151']], String(kept));
  assert.deepEqual((await sink.pg.query('SELECT DISTINCT sweep FROM cosmos_sink.resyncs')).map((x) => x.sweep), [null]);
  // the sweep can be asked for again; the container becomes exact
  await sink.pg.query(`UPDATE cosmos_sink.resyncs SET sweep = 'pending' WHERE staging_table = 'lost_orders'::regclass`);
  await waitRecovered();
  const r = await sink.verify('lost_orders', 'order_id', 'lost_orders');
  assert.ok(r.ok, String(r));
});

test('a restart keeps the slot trusted: no false alarm', async () => {
  await sink.pg.query(`UPDATE lost_orders SET note = 'before restart'`);
  await sink.waitCaughtUp();
  await sink.pg.killPostmaster9();
  await sink.pg.start();
  await sink.waitReady();
  await sink.pg.query(`UPDATE lost_orders SET note = 'after restart' WHERE order_id % 2 = 0`);
  await sink.waitCaughtUp();
  const st = await sink.status();
  assert.equal(st.last_error, null);
  const r = await sink.verify('lost_orders', 'order_id', 'lost_orders');
  assert.ok(r.ok, String(r));
});

// The sweep pages (200 documents a page, x-ms-continuation), lists each of
// the container's partition key ranges (the emulator ignores the range id and
// answers the whole container for each: the check is idempotent, so the
// result is the same), and rides out 503s, 429s and 410s (which restart the
// listing with fresh ranges); every request is signed as the service checks.
test('the sweep lists page by page and range by range, through a faulty endpoint', async () => {
  const proxy = await startFaultProxy({ emulator: sink.emu });
  try {
    await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
    await sink.pg.query('CREATE TABLE swept_many (id int PRIMARY KEY, k text NOT NULL)');
    await sink.route('swept_many', 'swept_many', 'k');
    await sink.pg.query(`INSERT INTO swept_many SELECT g, 'k' || g % 13 FROM generate_series(1, 500) g`);
    await sink.waitCaughtUp();
    assert.equal(await docCount('swept_many'), 500);

    await disableForwarding();
    await sink.pg.query("SELECT pg_drop_replication_slot('cosmos_sink')");
    await sink.pg.query('DELETE FROM swept_many WHERE id % 3 = 0');
    await sink.pg.setConf({ 'cosmos_sink.enabled': null });
    await expectLostState('swept_many', 500);

    await proxy.set({ pkRanges: 4, faultKinds: ['other', 'pkranges'], seed: 5,
      errorRate: { 503: 0.15, 410: 0.03 }, throttleRate: 0.1 });
    const since = (await proxy.requests({ limit: 1 })).at(-1)?.seq ?? 0;
    await sink.pg.query('SELECT cosmos_sink.recover()');
    await waitRecovered();
    const r = await sink.verify('swept_many', 'id', 'swept_many');
    assert.ok(r.ok, String(r));
    assert.equal(r.actualCount, 334);
    const [row] = await sink.pg.query(
      "SELECT sweep, docs_checked::int, docs_deleted::int FROM cosmos_sink.resyncs WHERE staging_table = 'swept_many'::regclass");
    assert.equal(row.sweep, 'done');
    assert.ok(row.docs_deleted >= 166, JSON.stringify(row));
    // pages of at most 200, over the 4 ranges, faults answered and retried
    const queries = (await proxy.requests({ since, kind: 'other' })).filter((q) => q.method === 'POST');
    assert.ok(queries.length >= 4 * 3, `${queries.length} listing requests`);
    assert.ok(queries.some((q) => q.status === 503 || q.status === 429), 'faults were injected and retried');
    const answered = queries.filter((q) => q.status === 200).length;
    assert.ok(answered >= 4 * 3, `${answered} pages answered`);
  } finally {
    await proxy.clear();
    await sink.pg.setConf({ 'cosmos_sink.endpoint': sink.emu.endpoint, 'cosmos_sink.ca_file': sink.emu.caFile });
    await proxy.stop();
  }
});
