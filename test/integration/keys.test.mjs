// Ids and partition keys are the text of values: a change of DateStyle,
// IntervalStyle, extra_float_digits or TimeZone in postgresql.conf must not give the
// same row another id or key (old documents would be orphaned and deletes
// would miss them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { compareDocs, expectedDocsSql, readContainer } from '../lib/verify.mjs';

let sink;
before(async () => { sink = await startSink(); });
after(async () => { await sink?.stop(); });

test('a change of DateStyle and float settings keeps ids and keys', async () => {
  await sink.pg.query(`CREATE TABLE k_days (day date PRIMARY KEY, bucket float8 NOT NULL, note text)`);
  await sink.route('k_days', 'k_days', 'bucket');
  await sink.pg.query(`INSERT INTO k_days SELECT DATE '2026-01-01' + g, (g % 3) / 3.0, 'first'
    FROM generate_series(0, 19) g`);
  await sink.waitCaughtUp();
  assert.ok((await sink.verify('k_days', 'day', 'k_days')).ok);

  // the DBA changes how dates and floats are written, and restarts
  await sink.pg.setConf({ DateStyle: 'SQL, DMY', extra_float_digits: 0, IntervalStyle: 'sql_standard' });
  await sink.pg.restart();
  await sink.waitReady();
  await sink.pg.query(`DELETE FROM k_days WHERE day < DATE '2026-01-11'`);
  await sink.pg.query(`UPDATE k_days SET note = 'second'`);
  await sink.waitCaughtUp();
  // the deletes found their documents; the updates replaced, not forked, them
  // (expected ids written the way the worker writes them, whatever the server's settings)
  const c = await sink.pg.client();
  let expected;
  try {
    await c.query(`SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1; SET IntervalStyle = 'postgres'`);
    expected = (await c.query(expectedDocsSql('k_days', 'day'))).rows.map((row) => row.doc);
  } finally {
    await c.end();
  }
  const actual = await readContainer({ endpoint: sink.emu.endpoint, caFile: sink.emu.caFile, database: 'shop', container: 'k_days' });
  const r = compareDocs(expected, actual);
  assert.ok(r.ok, String(r));
  assert.equal(actual.length, 10);
  const [{ n }] = await sink.pg.query(`SELECT count(*)::int AS n FROM cosmos_sink.dead_letters`);
  assert.equal(n, 0);
});

test('a change of TimeZone keeps timestamptz ids and keys (written in UTC)', async () => {
  await sink.pg.setConf({ DateStyle: null, extra_float_digits: null, IntervalStyle: null, TimeZone: 'UTC' });
  await sink.pg.restart();
  await sink.waitReady();
  await sink.pg.query(`CREATE TABLE k_moments (at timestamptz PRIMARY KEY, shift timestamptz NOT NULL, note text)`);
  await sink.route('k_moments', 'k_moments', 'shift');
  await sink.pg.query(`INSERT INTO k_moments SELECT TIMESTAMPTZ '2026-03-01 08:00:00+00' + g * interval '1 hour',
    TIMESTAMPTZ '2026-03-01 00:00:00+00' + (g % 3) * interval '1 day', 'first' FROM generate_series(0, 19) g`);
  await sink.waitCaughtUp();

  await sink.pg.setConf({ TimeZone: 'Europe/Berlin' });
  await sink.pg.restart();
  await sink.waitReady();
  await sink.pg.query(`DELETE FROM k_moments WHERE at < TIMESTAMPTZ '2026-03-01 18:00:00+00'`);
  await sink.pg.query(`UPDATE k_moments SET note = 'second'`);
  await sink.waitCaughtUp();
  const c = await sink.pg.client();
  let expected;
  try {
    await c.query(`SET TimeZone = 'UTC'`);
    expected = (await c.query(expectedDocsSql('k_moments', 'at'))).rows.map((row) => row.doc);
  } finally {
    await c.end();
  }
  const actual = await readContainer({ endpoint: sink.emu.endpoint, caFile: sink.emu.caFile, database: 'shop', container: 'k_moments' });
  const r = compareDocs(expected, actual);
  assert.ok(r.ok, String(r));
  assert.equal(actual.length, 10, 'the deletes found their documents, the updates did not fork them');
});
