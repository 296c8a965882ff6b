// Smoke test of the integration-test harness itself (no cosmos_sink worker
// involved): the emulator over verified TLS, a throwaway PostgreSQL, the
// Flink-style JDBC load with deletes and a replay, documents upserted with the
// SDK standing in for the worker, and verify.mjs both passing on a faithful
// copy and catching a corrupted, a deleted and an extra document.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import https from 'node:https';
import { promisify } from 'node:util';
import { startEmulator, createContainer, cosmosClient, upsertDocuments } from '../lib/emulator.mjs';
import { startPostgres } from '../lib/pg.mjs';
import { runFlinkLoad } from '../lib/flink.mjs';
import { verifyContainer, expectedDocsSql } from '../lib/verify.mjs';
import { Cleanup } from '../lib/util.mjs';

const TABLE = 'public.orders_staging';
const DB = 'shop';

describe('test harness', { timeout: 300000 }, () => {
  const cleanup = new Cleanup();
  let emu;
  let pg;
  let load;

  before(async () => {
    emu = await startEmulator();
    cleanup.add(() => emu.stop());
    // The worker is not under test here (and may be mid-development): keep it off
    pg = await startPostgres({ conf: { 'cosmos_sink.enabled': 'off' } });
    cleanup.add(() => pg.cleanup());
    await pg.query('CREATE EXTENSION cosmos_sink');
    load = await runFlinkLoad({
      url: pg.jdbcUrl(), table: TABLE, create: true, rows: 5000, keys: 1500, partitions: 20,
      batch: 200, deletePct: 10, movePct: 5, replay: 3, seed: 42, payload: 100, timeoutMs: 120000,
    });
  });

  after(() => cleanup.run());

  test('emulator TLS is verified against the generated CA only', async () => {
    // Node without the CA must refuse the certificate
    await assert.rejects(new Promise((resolve, reject) => {
      https.get(emu.endpoint, resolve).on('error', reject);
    }), /self[- ]signed|unable to (get|verify)/i);
    // libcurl/OpenSSL (what the C client uses) accepts it with the CA, by name and by IP
    const { stdout } = await promisify(execFile)('curl', ['-sS', '--fail', '--cacert', emu.caFile, emu.endpoint]);
    assert.match(stdout, /writableLocations/);
    await promisify(execFile)('curl', ['-sS', '--fail', '--cacert', emu.caFile, `https://127.0.0.1:${emu.port}/`]);
  });

  test('Flink load ran with deletes and a replay', async () => {
    assert.equal(load.changes, 5000);
    assert.equal(load.batches, 25);
    assert.equal(load.replayed_batches, 3);
    assert.ok(load.deletes > 100, `deletes: ${load.deletes}`);
    const [{ n, customers }] = await pg.query(`SELECT count(*)::int AS n, count(DISTINCT customer_id)::int AS customers FROM ${TABLE}`);
    assert.ok(n > 500 && n <= 1500, `rows: ${n}`);
    assert.equal(customers, 20);
    const [{ relreplident }] = await pg.query(`SELECT relreplident FROM pg_class WHERE oid = '${TABLE}'::regclass`);
    assert.equal(relreplident, 'f');
  });

  test('a faithful copy verifies with zero missing, stale and extra', async () => {
    const def = await createContainer(emu.endpoint, emu.caFile, DB, 'orders', ['/customer_id']);
    assert.deepEqual(def.partitionKey.paths, ['/customer_id']);
    const docs = (await pg.query(expectedDocsSql(TABLE, 'order_id'))).map((r) => r.doc);
    await upsertDocuments(emu.endpoint, emu.caFile, DB, 'orders', docs);
    const r = await verifyContainer({ pg, table: TABLE, idColumn: 'order_id', endpoint: emu.endpoint, caFile: emu.caFile, database: DB, container: 'orders' });
    assert.ok(r.ok, String(r));
    assert.equal(r.expectedCount, docs.length);
    assert.equal(r.actualCount, docs.length);
    assert.deepEqual([r.missing.length, r.stale.length, r.extra.length], [0, 0, 0]);
  });

  test('verification catches a corrupted, a deleted and an extra document', async () => {
    await createContainer(emu.endpoint, emu.caFile, DB, 'orders_bad', ['/customer_id']);
    const docs = (await pg.query(`${expectedDocsSql(TABLE, 'order_id')} ORDER BY order_id`)).map((r) => r.doc);
    await upsertDocuments(emu.endpoint, emu.caFile, DB, 'orders_bad', docs);
    const [victim, gone] = [docs[10], docs[20]];
    const client = cosmosClient(emu.endpoint, emu.caFile);
    try {
      const items = client.database(DB).container('orders_bad').items;
      // Same value, wrong JSON type: the comparison must be exact
      await items.upsert({ ...victim, amount: String(victim.amount) });
      await client.database(DB).container('orders_bad').item(gone.id, gone.customer_id).delete();

      const args = { pg, table: TABLE, idColumn: 'order_id', endpoint: emu.endpoint, caFile: emu.caFile, database: DB, container: 'orders_bad' };
      let r = await verifyContainer(args);
      assert.equal(r.ok, false);
      assert.equal(r.stale.length, 1, String(r));
      assert.equal(r.missing.length, 1, String(r));
      assert.equal(r.extra.length, 0, String(r));
      assert.equal(r.stale[0].id, victim.id);
      assert.equal(r.missing[0].id, gone.id);
      assert.match(r.sample, /stale id=\d+: amount: expected [\d.]+, got "/);

      // An extra document, and a stray copy of an existing id in another logical partition
      await items.upsert({ ...docs[0], id: '999999999' });
      await items.upsert({ ...docs[1], customer_id: 'elsewhere' });
      r = await verifyContainer(args);
      assert.deepEqual([r.missing.length, r.stale.length, r.extra.length], [1, 1, 2], String(r));
      assert.deepEqual(r.extra.map((x) => x.id).sort(), [docs[1].id, '999999999'].sort());
    } finally {
      client.dispose();
    }
  });
});
