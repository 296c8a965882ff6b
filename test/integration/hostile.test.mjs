// Hostile tenants and a hostile endpoint, against the running worker: a table
// owner's trigger and cast never run with the worker's rights, a failing touch
// stops only its backfill, a role with no privileges cannot make the worker
// delete anything, a huge row is parked without a crash, an endpoint's absurd
// headers cannot stall or poison the worker, secret files are checked without
// blocking, plain http is refused, and a library that is not preloaded says so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startSink, writeSecretFile } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { EMULATOR_KEY, cosmosClient } from '../lib/emulator.mjs';
import { startPostgres } from '../lib/pg.mjs';
import { run, waitFor } from '../lib/util.mjs';

let sink;
let proxy;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.request_timeout_ms': 2000 } });
  proxy = await startFaultProxy({ emulator: sink.emu });
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
  await sink.pg.psql(`
    CREATE ROLE alice LOGIN;
    CREATE ROLE mallory LOGIN;
    CREATE SCHEMA alice AUTHORIZATION alice;
    SET ROLE alice;
    CREATE TABLE alice.log (who text, what text, at timestamptz DEFAULT clock_timestamp());
    CREATE TYPE alice.mood AS ENUM ('happy', 'sad');
    CREATE FUNCTION alice.mood_json(alice.mood) RETURNS json LANGUAGE sql
      AS $$ SELECT json_build_object('leak', (SELECT string_agg(rolname, ',') FROM pg_authid)) $$;
    CREATE CAST (alice.mood AS json) WITH FUNCTION alice.mood_json(alice.mood);
    CREATE TABLE alice.orders (order_id int PRIMARY KEY, customer_id text NOT NULL,
                               mood alice.mood, note text);
    CREATE FUNCTION alice.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO alice.log (who, what) VALUES (current_user, 'touched ' || NEW.order_id);
        IF OLD.note = 'refuse' THEN
            RAISE EXCEPTION 'alice refuses the touch of %', NEW.order_id;
        END IF;
        BEGIN
            ALTER ROLE alice SUPERUSER;
            INSERT INTO alice.log (who, what) VALUES (current_user, 'became superuser');
        EXCEPTION WHEN others THEN NULL;
        END;
        RETURN NEW;
    END $$;
    CREATE TRIGGER escalate BEFORE UPDATE ON alice.orders FOR EACH ROW EXECUTE FUNCTION alice.escalate();
    RESET ROLE;`);
  await sink.route('alice.orders', 'alice_orders', 'customer_id');
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

async function waitForStatus(pred, what, timeoutMs = 30000) {
  let st;
  await waitFor(async () => { st = await sink.status(); return pred(st); }, { timeoutMs, what })
    .catch((e) => { throw new Error(`${e.message}; status: ${JSON.stringify(st)}`); });
  return st;
}

async function readDoc(container, id, pk) {
  const client = cosmosClient(sink.emu.endpoint, sink.emu.caFile);
  try {
    const { resource } = await client.database('shop').container(container).item(id, pk).read();
    return resource ?? null;
  } finally {
    client.dispose();
  }
}

test('a table owner\'s cast and trigger never run with the worker\'s rights', async () => {
  const workerPid = await sink.pg.backendPid();
  await sink.pg.psql(`SET ROLE alice;
    INSERT INTO alice.orders SELECT g, 'c' || (g % 5), 'happy', 'row ' || g FROM generate_series(1, 50) g;`);
  await sink.waitCaughtUp();
  // the enum is written with its output function: alice's cast (reading pg_authid) never ran
  const doc = await readDoc('alice_orders', '1', 'c1');
  assert.equal(doc.mood, 'happy');
  // resync touches run as alice, restricted: her trigger cannot make her a superuser
  await sink.pg.query(`SELECT cosmos_sink.resync('alice.orders')`);
  await waitFor(async () => (await sink.pg.query(
    `SELECT finished_at IS NOT NULL AS done FROM cosmos_sink.resyncs WHERE staging_table = 'alice.orders'::regclass`))[0]?.done,
  { timeoutMs: 30000, what: 'resync to finish' });
  const log = await sink.pg.query(`SELECT DISTINCT who FROM alice.log WHERE what LIKE 'touched%'`);
  assert.deepEqual(log.map((r) => r.who), ['alice']);
  const [{ rolsuper }] = await sink.pg.query(`SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'`);
  assert.equal(rolsuper, false);
  assert.equal((await sink.pg.query(`SELECT count(*)::int AS n FROM alice.log WHERE what = 'became superuser'`))[0].n, 0);
  assert.equal(await sink.pg.backendPid(), workerPid, 'the worker did not restart');
});

test('a touch the owner\'s code refuses stops only that backfill; the stream goes on', async () => {
  const workerPid = await sink.pg.backendPid();
  await sink.pg.query(`UPDATE alice.orders SET note = 'refuse' WHERE order_id = 7`);
  await sink.waitCaughtUp();
  await sink.pg.query(`SELECT cosmos_sink.resync('alice.orders')`);
  const [job] = await waitFor(async () => {
    const rows = await sink.pg.query(`SELECT finished_at, note FROM cosmos_sink.resyncs WHERE staging_table = 'alice.orders'::regclass`);
    return rows[0]?.finished_at ? rows : null;
  }, { timeoutMs: 30000, what: 'the backfill to stop' });
  assert.match(job.note, /^failed: alice refuses the touch of 7/);
  assert.match(sink.pg.serverLog(), /WARNING:  cosmos_sink: resync stopped: alice refuses the touch of 7/);
  await sink.pg.query(`INSERT INTO alice.orders VALUES (100, 'c0', 'sad', 'after the refusal')`);
  await sink.waitCaughtUp();
  assert.equal((await readDoc('alice_orders', '100', 'c0'))?.note, 'after the refusal');
  assert.equal(await sink.pg.backendPid(), workerPid, 'the worker did not restart');
});

test('a role with no privileges cannot make the worker delete a document', async () => {
  const workerPid = await sink.pg.backendPid();
  const [{ oid }] = await sink.pg.query(`SELECT 'alice.orders'::regclass::oid AS oid`);
  await sink.pg.psql(`SET ROLE mallory;
    SELECT pg_logical_emit_message(true, 'cosmos_sink', E'delete\\n${oid}\\n["c2"]\\n2');
    SELECT pg_logical_emit_message(true, 'cosmos_sink', E'delete\\n${oid}\\nnot-json\\n2');`);
  await sink.pg.query(`INSERT INTO alice.orders VALUES (101, 'c1', 'sad', 'after the messages')`);
  await sink.waitCaughtUp();
  assert.ok(await readDoc('alice_orders', '2', 'c2'), 'document 2 is still there');
  assert.equal(await sink.pg.backendPid(), workerPid, 'the worker did not restart');
  await assert.rejects(sink.pg.psql(`SET ROLE mallory; INSERT INTO cosmos_sink.resend_deletes VALUES (${oid}, '["c2"]', '2');`),
    /permission denied/);
});

test('a huge row is parked without a crash, and the rows after it flow', async () => {
  const workerPid = await sink.pg.backendPid();
  await sink.pg.query(`INSERT INTO alice.orders VALUES (200, 'c0', 'sad', repeat(E'\\x01', 60 * 1024 * 1024))`);
  await sink.pg.query(`INSERT INTO alice.orders VALUES (201, 'c1', 'sad', 'after the huge row')`);
  await sink.waitCaughtUp({ timeoutMs: 180000 });
  const [parked] = await sink.pg.query(`SELECT operation, error FROM cosmos_sink.dead_letters WHERE doc_id = '200'`);
  assert.equal(parked.operation, 'error');
  assert.match(parked.error, /cannot become a document .*62914560 bytes/);
  assert.equal((await readDoc('alice_orders', '201', 'c1'))?.note, 'after the huge row');
  assert.equal(await sink.pg.backendPid(), workerPid, 'the worker did not restart');
});

test('absurd header values from the endpoint cannot poison the budget or stall the worker', async () => {
  await sink.pg.setConf({ 'cosmos_sink.max_ru_per_second': 1000 });
  for (const charge of ['nan', 'inf', '-5', '1e300', 'garbage']) {
    await proxy.set({ responseHeaders: { 'x-ms-request-charge': charge } });
    await sink.pg.query(`INSERT INTO alice.orders SELECT g, 'c' || (g % 5), 'sad', $1
      FROM generate_series(300, 340) g ON CONFLICT (order_id) DO UPDATE SET note = EXCLUDED.note`, [`charge ${charge}`]);
    await sink.waitCaughtUp({ timeoutMs: 30000 });
    assert.equal((await readDoc('alice_orders', '300', 'c0'))?.note, `charge ${charge}`);
    const [stats] = await sink.pg.query(`SELECT ru_total::float8 AS ru FROM cosmos_sink.container_stats WHERE container = 'alice_orders'`);
    assert.ok(Number.isFinite(stats.ru) && stats.ru >= 0 && stats.ru < 1e7, `ru_total stays finite: ${stats.ru}`);
  }
  await proxy.set({ responseHeaders: {} });
  await sink.pg.setConf({ 'cosmos_sink.max_ru_per_second': 0 });

  // a 429 asking for a 24-day wait is retried after at most a minute
  await proxy.failNext(1, { status: 429, retryAfterMs: 2_000_000_000 });
  const started = Date.now();
  await sink.pg.query(`INSERT INTO alice.orders VALUES (400, 'c0', 'sad', 'after a long retry-after')`);
  await sink.waitCaughtUp({ timeoutMs: 90000 });
  assert.ok(Date.now() - started < 85000, `waited ${Date.now() - started} ms`);
  assert.equal((await readDoc('alice_orders', '400', 'c0'))?.note, 'after a long retry-after');
});

test('secret files: regular, owned by the server user, private; a FIFO does not block', async () => {
  const fifo = path.join(sink.dir, 'key.fifo');
  await run('mkfifo', ['-m', '600', fifo]);
  const { uid, gid } = (await import('../lib/util.mjs')).osUser('postgres');
  chownSync(fifo, uid, gid);
  const foreign = path.join(sink.dir, 'foreign.key');
  writeFileSync(foreign, `${EMULATOR_KEY}\n`, { mode: 0o644 });
  chownSync(foreign, 0, 0);
  chmodSync(foreign, 0o644);
  const open = writeSecretFile(sink.dir, 'open.token', 'a.b.c\n', 0o644);
  chmodSync(open, 0o644);
  const cases = [
    [{ 'cosmos_sink.key_file': fifo }, /is not a regular file/],
    [{ 'cosmos_sink.key_file': foreign }, /is not owned by the server's OS user/],
    [{ 'cosmos_sink.key_file': '', 'cosmos_sink.aad_token_file': open }, /readable by group or others/],
  ];
  for (const [conf, pattern] of cases) {
    await sink.pg.setConf(conf);
    const st = await waitForStatus((s) => s.state === 'error' && pattern.test(s.last_error ?? ''), `error ${pattern}`);
    assert.ok(!st.last_error.includes(EMULATOR_KEY.slice(0, 20)), 'no key text in last_error');
  }
  await sink.pg.setConf({ 'cosmos_sink.key_file': sink.keyFile, 'cosmos_sink.aad_token_file': '' });
  await waitForStatus((s) => s.state !== 'error', 'recovery');
});

test('plain http is refused for any host but loopback', async () => {
  const since = sink.pg.logOffset();
  await sink.pg.setConf({ 'cosmos_sink.endpoint': 'http://cosmos.example.com/' });
  await waitFor(() => /must use https/.test(sink.pg.serverLog({ since })), { what: 'the setting refused' });
  // the same rule for an endpoint that comes from a connection string
  const cs = writeSecretFile(sink.dir, 'conn.key',
    `AccountEndpoint=http://cosmos.example.com/;AccountKey=${EMULATOR_KEY};\n`);
  await sink.pg.setConf({ 'cosmos_sink.endpoint': '', 'cosmos_sink.key_file': cs });
  const st = await waitForStatus((s) => s.state === 'error' && /must use https/.test(s.last_error ?? ''), 'https error');
  assert.ok(!st.last_error.includes(EMULATOR_KEY.slice(0, 20)));
  // verification can be off only for a loopback endpoint
  await sink.pg.setConf({ 'cosmos_sink.key_file': sink.keyFile, 'cosmos_sink.endpoint': 'https://cosmos.example.com/',
    'cosmos_sink.tls_verify': 'off' });
  await waitForStatus((s) => s.state === 'error' && /tls_verify = off is allowed only for a loopback/.test(s.last_error ?? ''), 'tls_verify error');
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.tls_verify': 'on' });
  await waitForStatus((s) => s.state !== 'error', 'recovery');
});

test('without shared_preload_libraries, CREATE EXTENSION is an ERROR that names the fix', async () => {
  const pg = await startPostgres({ conf: { shared_preload_libraries: '' } });
  try {
    const c = await pg.client();
    try {
      await assert.rejects(c.query('CREATE EXTENSION cosmos_sink'),
        (e) => /shared_preload_libraries/.test(`${e.message} ${e.hint}`) && e.severity === 'ERROR');
      const { rows } = await c.query('SELECT 1 AS alive');
      assert.equal(rows[0].alive, 1, 'the session survives');
    } finally {
      await c.end();
    }
  } finally {
    await pg.cleanup();
  }
});
