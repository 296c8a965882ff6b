// Secrets never leak and TLS stays verified: the account key appears in no
// log line, setting, error text or view; key files are read from files only;
// a certificate the worker cannot verify is refused with a clear error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { generateCerts } from '../lib/certs.mjs';
import { EMULATOR_KEY } from '../lib/emulator.mjs';
import { startSink } from '../lib/sink.mjs';
import { waitFor } from '../lib/util.mjs';

let sink;
before(async () => { sink = await startSink({ conf: { log_min_messages: 'debug1', log_statement: 'all' } }); });
after(async () => { await sink?.stop(); });

/** Everything a DBA or a log reader can see, as one string. */
async function visibleText() {
  const q = async (sql) => JSON.stringify(await sink.pg.query(sql));
  return [
    sink.pg.serverLog(),
    await q('SELECT name, setting, reset_val, boot_val FROM pg_settings'),
    await q('SELECT * FROM pg_file_settings'),
    await q('SELECT * FROM cosmos_sink.status'),
    await q('SELECT * FROM cosmos_sink.container_stats'),
    await q('SELECT * FROM cosmos_sink.dead_letters'),
    await q('SELECT query FROM pg_stat_activity'),
  ].join('\n');
}

const KEY_FRAGMENTS = [EMULATOR_KEY, EMULATOR_KEY.slice(0, 24), Buffer.from(EMULATOR_KEY, 'base64').toString('hex').slice(0, 32)];

function assertNoKey(text, where) {
  for (const f of KEY_FRAGMENTS) assert.ok(!text.includes(f), `key material found in ${where}`);
}

test('the key never shows in logs, settings, views or errors, even at debug1 with log_statement=all', async () => {
  await sink.pg.query('CREATE TABLE s_orders (order_id int PRIMARY KEY, customer_id text NOT NULL)');
  await sink.route('s_orders', 's_orders', 'customer_id');
  await sink.pg.query(`INSERT INTO s_orders SELECT g, 'c' || g % 3 FROM generate_series(1, 100) g`);
  await sink.waitCaughtUp();
  // reload twice with a changed setting: PostgreSQL logs changed values
  await sink.pg.setConf({ 'cosmos_sink.max_in_flight': 8 });
  await sink.pg.setConf({ 'cosmos_sink.max_in_flight': null });
  // a broken key file (mode) and a malformed one both produce errors that must not echo it
  await sink.pg.query('SELECT pg_reload_conf()');
  const [{ setting }] = await sink.pg.query(`SELECT setting FROM pg_settings WHERE name = 'cosmos_sink.key_file'`);
  assert.equal(setting, sink.keyFile, 'the setting holds the path, not the key');
  assertNoKey(await visibleText(), 'server state');
});

test('a malformed key file is refused without echoing its contents', async () => {
  const bad = sink.pg.writePrivateFile ? sink.pg.writePrivateFile('bad.key', `AccountEndpoint=${sink.emu.endpoint};AccountKey=${EMULATOR_KEY.slice(0, 40)}!!!;`) : null;
  assert.ok(bad, 'harness can write a private file');
  await sink.pg.setConf({ 'cosmos_sink.key_file': bad });
  let st;
  await waitFor(async () => {
    st = await sink.status();
    return st.state === 'error' && /key/i.test(st.last_error ?? '');
  }, { timeoutMs: 30000, what: 'error about the key file' });
  assert.ok(st.last_error.includes(bad), `last_error names the file: ${st.last_error}`);
  assertNoKey(await visibleText(), 'server state after a malformed key');
  assert.ok(!(await visibleText()).includes(EMULATOR_KEY.slice(0, 40)), 'malformed key text not echoed');
  await sink.pg.setConf({ 'cosmos_sink.key_file': sink.keyFile });
  await waitFor(async () => (await sink.status()).state !== 'error', { timeoutMs: 30000, what: 'recovery' });
});

test('TLS verification is on by default and a wrong CA gives a clear error', async () => {
  const [{ tls_verify: tv }] = await sink.pg.query('SELECT current_setting(\'cosmos_sink.tls_verify\') AS tls_verify');
  assert.equal(tv, 'on');
  const other = await generateCerts(path.join(sink.dir, 'other-ca'));
  await sink.pg.query('CREATE TABLE tls_orders (order_id int PRIMARY KEY, customer_id text NOT NULL)');
  await sink.pg.setConf({ 'cosmos_sink.ca_file': other.caFile });
  await sink.route('tls_orders', 'tls_orders', 'customer_id');
  await sink.pg.query(`INSERT INTO tls_orders VALUES (1, 'c1')`);
  let st;
  await waitFor(async () => {
    st = await sink.status();
    return /certificate/i.test(st.last_error ?? '');
  }, { timeoutMs: 60000, what: 'a certificate error in last_error' });
  assert.match(st.last_error, /tls_orders: no response from https:\/\/127\.0\.0\.1:\d+: SSL certificate (problem|OpenSSL verify result)/); // curl 8.15 and later: "OpenSSL verify result"
  await sink.pg.setConf({ 'cosmos_sink.ca_file': sink.emu.caFile });
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('tls_orders', 'order_id', 'tls_orders');
  assert.ok(r.ok, String(r));
});

test('the worker never failed: no ERROR or FATAL of its own in the log, one worker process', async () => {
  const log = sink.pg.serverLog();
  const bad = log.split('\n').filter((l) => /cosmos_sink worker: (ERROR|FATAL|PANIC)/.test(l) ||
    /background worker "cosmos_sink worker" .* exited/.test(l));
  assert.deepEqual(bad, []);
});
