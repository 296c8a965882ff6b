// resync(): rows that existed before the route are backfilled through the
// stream, consistent with concurrent updates and deletes (a backfilled row
// never overwrites a newer streamed change), resumable after a restart, with
// progress in cosmos_sink.status.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { sleep, waitFor } from '../lib/util.mjs';

let sink;
before(async () => { sink = await startSink(); });
after(async () => { await sink?.stop(); });

// On a timeout, say where the backfill stood and what the worker logged of it
async function waitForResync(table, fn, opts) {
  try {
    return await waitFor(fn, opts);
  } catch (e) {
    const [row] = await sink.pg.query('SELECT * FROM cosmos_sink.resyncs WHERE staging_table = $1::regclass', [table]).catch(() => []);
    const [st] = await sink.pg.query('SELECT w.*, s.active, s.confirmed_flush_lsn, pg_current_wal_lsn() AS wal FROM cosmos_sink.worker_status() w LEFT JOIN pg_replication_slots s ON s.slot_name = w.slot_name').catch((x) => [x.message]);
    const act = await sink.pg.query(`SELECT pid, backend_type, state, wait_event_type, wait_event, left(query, 120) AS query
      FROM pg_stat_activity WHERE backend_type NOT IN ('checkpointer', 'background writer', 'walwriter', 'autovacuum launcher', 'logical replication launcher', 'io worker')`).catch(() => []);
    const waits = await sink.pg.query('SELECT locktype, relation::regclass AS rel, mode, pid FROM pg_locks WHERE NOT granted').catch(() => []);
    e.message += `\nactivity: ${JSON.stringify(act)}\nlock waits: ${JSON.stringify(waits)}`;
    const all = await sink.pg.query('SELECT staging_table::text, started_at, finished_at, rows_done FROM cosmos_sink.resyncs').catch(() => []);
    e.message += `\nall resyncs: ${JSON.stringify(all)}`;
    if (process.env.RESYNC_KEEP_LOG) (await import('node:fs')).writeFileSync(process.env.RESYNC_KEEP_LOG, sink.pg.serverLog());
    const lines = sink.pg.serverLog().split('\n').filter((l) => /resync|ERROR|FATAL|PANIC|terminated/.test(l)).slice(-20);
    e.message += `\nresyncs: ${JSON.stringify(row)}\nstatus: ${JSON.stringify(st)}\nserver log:\n${lines.join('\n')}`;
    throw e;
  }
}

async function resyncDone(table) {
  const [r] = await sink.pg.query('SELECT finished_at IS NOT NULL AS done, rows_done, rows_total FROM cosmos_sink.resyncs WHERE staging_table = $1::regclass', [table]);
  return r;
}

test('backfill with concurrent updates and deletes ends exact', async () => {
  await sink.pg.query(`CREATE TABLE rs_orders (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
    amount numeric(12,2), status text, updated_at timestamptz)`);
  // rows from before the route: not streamed
  await sink.pg.query(`INSERT INTO rs_orders SELECT g, 'c' || g % 17, g, 'OLD', now() FROM generate_series(1, 20000) g`);
  await sink.route('rs_orders', 'rs_orders', 'customer_id');
  await sink.pg.query(`SELECT cosmos_sink.resync('rs_orders')`);

  // Flink keeps writing meanwhile: updates (some moving the partition key) and deletes.
  // Its rows and a chunk's overlap, locked in different orders: a deadlock victim
  // retries, as Flink's JDBC sink does
  const write = async (sql, params) => {
    for (let attempt = 1; ; attempt++) {
      try { return await sink.pg.query(sql, params); } catch (e) {
        if (e.code !== '40P01' || attempt >= 5) throw e;
      }
    }
  };
  let stop = false;
  let progressSeen = false;
  const writer = (async () => {
    let round = 0;
    while (!stop) {
      round++;
      await write(`UPDATE rs_orders SET amount = amount + 1, status = 'NEW-' || $1,
        customer_id = CASE WHEN order_id % 97 = 0 THEN 'moved' ELSE customer_id END
        WHERE order_id % 50 = $1 % 50`, [round]);
      await write(`DELETE FROM rs_orders WHERE order_id % 211 = $1 % 211`, [round]);
      await write(`INSERT INTO rs_orders SELECT 100000 + $1 * 10 + g, 'c' || g, g, 'INSERTED', now()
        FROM generate_series(1, 10) g`, [round]);
      const [st] = await sink.pg.query('SELECT resync_progress FROM cosmos_sink.status');
      if (/rs_orders \d+\/\d+/.test(st.resync_progress ?? '')) progressSeen = true;
      await sleep(50);
    }
  })();
  await waitForResync('rs_orders', async () => (await resyncDone('rs_orders')).done, { timeoutMs: 120000, what: 'resync finished' });
  stop = true;
  await writer;
  await sink.waitCaughtUp();
  const r = await sink.verify('rs_orders', 'order_id', 'rs_orders');
  assert.ok(r.ok, String(r));
  assert.ok(progressSeen, 'status.resync_progress showed rows done / total while running');
  const done = await resyncDone('rs_orders');
  assert.ok(Number(done.rows_total) > 10000 && Number(done.rows_done) > 10000, JSON.stringify(done));
  // one live version of the job's row (a seqscan sees no left-over version of a failed chunk)
  const rows = await sink.pg.query(`SELECT count(*)::int AS n FROM cosmos_sink.resyncs WHERE staging_table::text = 'rs_orders'`);
  assert.equal(rows[0].n, 1);
});

// The worker decodes from its slot and also writes (a backfill chunk is an
// UPDATE in its own transaction). Other backends must see that transaction
// as running: a reader that took it for aborted would hint the old version
// of a row it looks up as never deleted, and once the chunk commits that row
// has two live versions (duplicate key errors, a job row read twice). The
// chunk is held open by a statement trigger that sleeps; meanwhile a later
// transaction commits and this session looks rows up by key (index scans:
// the HOT chain's old version only).
test('rows looked up during a backfill chunk have one live version after it', async () => {
  await sink.pg.query(`CREATE TABLE rs_seen (id bigint PRIMARY KEY, k text NOT NULL, v int) WITH (fillfactor = 50)`);
  await sink.pg.query(`INSERT INTO rs_seen SELECT g, 'k' || g % 3, g FROM generate_series(1, 1000) g`);
  await sink.pg.query(`CREATE FUNCTION rs_seen_lookup() RETURNS int LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_bitmapscan = off AS $$
    DECLARE found_rows int := 0;
    BEGIN
      FOR i IN 1..1000 BY 7 LOOP
        PERFORM 1 FROM rs_seen WHERE id = i;
        IF FOUND THEN found_rows := found_rows + 1; END IF;
      END LOOP;
      RETURN found_rows;
    END $$`);
  await sink.pg.query(`CREATE FUNCTION rs_seen_hold() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$`);
  await sink.pg.query(`CREATE TRIGGER hold AFTER UPDATE ON rs_seen FOR EACH STATEMENT EXECUTE FUNCTION rs_seen_hold()`);
  await sink.route('rs_seen', 'rs_seen', 'k');
  await sink.pg.query(`SELECT cosmos_sink.resync('rs_seen')`);
  // the chunk has updated every row and sleeps in the trigger: its xid is running
  const sleeping = `SELECT a.backend_xid::text::xid8 AS xid FROM pg_stat_activity a
    WHERE a.backend_type = 'cosmos_sink worker' AND a.wait_event = 'PgSleep' AND a.backend_xid IS NOT NULL`;
  await waitForResync('rs_seen', async () => (await sink.pg.query(sleeping)).length === 1,
    { timeoutMs: 60000, what: 'backfill chunk holding its transaction open' });
  // a later transaction commits meanwhile: the snapshot's xmax passes the chunk's xid
  await sink.pg.query('SELECT pg_current_xact_id()');
  const [during] = await sink.pg.query(`SELECT pg_visible_in_snapshot(w.xid, pg_current_snapshot()) AS done,
      rs_seen_lookup() AS found
    FROM (${sleeping}) w`);
  assert.equal(during.done, false, "the worker's running transaction is running in other backends' snapshots");
  assert.equal(during.found, 143, 'every row looked up is there while the chunk runs');
  await waitForResync('rs_seen', async () => (await resyncDone('rs_seen')).done, { timeoutMs: 60000, what: 'resync finished' });
  const [after] = await sink.pg.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM rs_seen`);
  assert.deepEqual(after, { n: 1000, ids: 1000 }, 'one live version of each row after the chunk committed');
  await sink.waitCaughtUp();
  const r = await sink.verify('rs_seen', 'id', 'rs_seen');
  assert.ok(r.ok, String(r));
});

test('a backfill resumes where it stopped after a crash', async () => {
  await sink.pg.query(`CREATE TABLE rs2 (order_id bigint PRIMARY KEY, customer_id text NOT NULL, note text)`);
  await sink.pg.query(`INSERT INTO rs2 SELECT g, 'c' || g % 5, 'before' FROM generate_series(1, 30000) g`);
  await sink.route('rs2', 'rs2', 'customer_id');
  await sink.pg.setConf({ 'cosmos_sink.max_in_flight': 1, 'cosmos_sink.batch_max_ops': 20 });
  await sink.pg.query(`SELECT cosmos_sink.resync('rs2')`);
  await waitForResync('rs2', async () => Number((await resyncDone('rs2')).rows_done) >= 3000, { timeoutMs: 60000, what: 'backfill under way' });
  const before = Number((await resyncDone('rs2')).rows_done);
  assert.ok(before < 30000, 'crash in the middle of the backfill');
  await sink.pg.killPostmaster9();
  await sink.pg.start();
  await sink.waitReady();
  await sink.pg.setConf({ 'cosmos_sink.max_in_flight': null, 'cosmos_sink.batch_max_ops': null });
  await waitForResync('rs2', async () => (await resyncDone('rs2')).done, { timeoutMs: 120000, what: 'resync finished' });
  const done = await resyncDone('rs2');
  // the committed chunks were not redone: rows_done counts every row once
  assert.equal(Number(done.rows_done), 30000);
  await sink.waitCaughtUp();
  const r = await sink.verify('rs2', 'order_id', 'rs2');
  assert.ok(r.ok, String(r));
});

test('resync() of a table that is not routed says what to do', async () => {
  await sink.pg.query('CREATE TABLE rs_unrouted (id int PRIMARY KEY)');
  await assert.rejects(sink.pg.query(`SELECT cosmos_sink.resync('rs_unrouted')`),
    (e) => /is not routed/.test(e.message) && /add_route/.test(e.hint));
});
