// Configuration problems put the worker in state "error" with a last_error
// that names the fix, advance nothing, and heal on their own once fixed:
// a missing container, a partition key that differs from the route, a key
// file readable by others, and a plugin allow-list without cosmos_sink.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { createContainer } from '../lib/emulator.mjs';
import { startSink } from '../lib/sink.mjs';
import { startPostgres } from '../lib/pg.mjs';
import { waitFor } from '../lib/util.mjs';

let sink;
before(async () => { sink = await startSink(); });
after(async () => { await sink?.stop(); });

const DDL = (t) => `CREATE TABLE ${t} (order_id bigint PRIMARY KEY, customer_id text NOT NULL, amount numeric)`;

async function waitForError(pattern) {
  let st;
  await waitFor(async () => {
    st = await sink.status();
    return st.state === 'error' && pattern.test(st.last_error ?? '');
  }, { timeoutMs: 30000, what: `state error with last_error ${pattern}` }).catch((e) => {
    throw new Error(`${e.message}; status: ${JSON.stringify(st)}`);
  });
  return st;
}

test('a missing container: error naming it, nothing confirmed, healed once created', async () => {
  await sink.pg.query(DDL('lost_orders'));
  await sink.pg.query(`SELECT cosmos_sink.add_route('lost_orders', 'shop', 'lost', 'customer_id')`);
  await sink.pg.query(`INSERT INTO lost_orders SELECT g, 'c' || (g % 3), g FROM generate_series(1, 100) g`);
  const st = await waitForError(/shop\/lost: container not found/);
  const [{ behind }] = await sink.pg.query(
    `SELECT confirmed_flush_lsn < pg_current_wal_lsn() AS behind FROM pg_replication_slots WHERE slot_name = 'cosmos_sink'`);
  assert.ok(behind, 'the slot must not pass unsent changes');
  assert.ok(Number(st.lag_bytes) > 0);
  assert.match(sink.pg.serverLog(), /cosmos_sink: .*shop\/lost: container not found/);
  await createContainer(sink.emu.endpoint, sink.emu.caFile, 'shop', 'lost', ['/customer_id']);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('lost_orders', 'order_id', 'lost');
  assert.ok(r.ok, String(r));
  assert.equal((await sink.status()).last_error, null);
});

test('a container whose partition key differs from the route: error naming both', async () => {
  await sink.pg.query(DDL('mismatch_orders'));
  await createContainer(sink.emu.endpoint, sink.emu.caFile, 'shop', 'mismatch', ['/region']);
  await sink.pg.query(`SELECT cosmos_sink.add_route('mismatch_orders', 'shop', 'mismatch', 'customer_id')`);
  await sink.pg.query(`INSERT INTO mismatch_orders VALUES (1, 'c1', 1)`);
  await waitForError(/wants partition key \/customer_id but the container has \/region/);
  // removing the route parks what it could not send; the rest flows again
  await sink.pg.query(`SELECT cosmos_sink.remove_route('mismatch_orders')`);
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const parked = await sink.pg.query(`SELECT staging_table::text, operation, doc_id, document->>'customer_id' AS c, error
    FROM cosmos_sink.dead_letters`);
  assert.equal(parked.length, 1);
  assert.equal(parked[0].staging_table, 'mismatch_orders');
  assert.equal(parked[0].doc_id, '1');
  assert.equal(parked[0].c, 'c1');
  assert.match(parked[0].error, /route removed while its container failed: .*container has \/region/);
});

test('a key file readable by others: error with the chmod to run, healed after reload', async () => {
  await sink.pg.query(DDL('key_orders'));
  await sink.route('key_orders', 'key_orders', 'customer_id');
  chmodSync(sink.keyFile, 0o644);
  await sink.pg.query('SELECT pg_reload_conf()');
  const st = await waitForError(/readable by group or others.*chmod 600/);
  assert.ok(!st.last_error.includes('C2y6yDjf5'), 'no key material in last_error');
  await sink.pg.query(`INSERT INTO key_orders SELECT g, 'c' || (g % 3), g FROM generate_series(1, 50) g`);
  chmodSync(sink.keyFile, 0o600);
  await sink.pg.query('SELECT pg_reload_conf()');
  await sink.waitCaughtUp({ timeoutMs: 60000 });
  const r = await sink.verify('key_orders', 'order_id', 'key_orders');
  assert.ok(r.ok, String(r));
});

test('output_plugin_libraries without cosmos_sink: add_route and the worker say what to add', async () => {
  const pg = await startPostgres({ conf: { output_plugin_libraries: 'pgoutput, test_decoding',
    'cosmos_sink.endpoint': sink.emu.endpoint, 'cosmos_sink.ca_file': sink.emu.caFile,
    'cosmos_sink.key_file': sink.keyFile } });
  try {
    await pg.query('CREATE EXTENSION cosmos_sink');
    await pg.query(DDL('t'));
    await assert.rejects(pg.query(`SELECT cosmos_sink.add_route('t', 'shop', 't', 'customer_id')`),
      (e) => /not allowed by output_plugin_libraries/.test(e.message) &&
        /output_plugin_libraries = 'pgoutput, test_decoding, cosmos_sink'/.test(e.hint));
    await waitFor(async () => {
      const [st] = await pg.query('SELECT state, last_error FROM cosmos_sink.status');
      return st.state === 'error' && /output_plugin_libraries = 'pgoutput, test_decoding, cosmos_sink'/.test(st.last_error);
    }, { timeoutMs: 30000, what: 'worker error naming output_plugin_libraries' });
  } finally {
    await pg.cleanup();
  }
});
