// Hierarchical partition keys end to end (MultiHash containers, 2 and 3
// levels) and the common single-path Hash v2 container, through the fault
// proxy answering 4 partition key ranges and checking the worker's routing:
// every op of a bulk request must hash (EPK, reference §6.4) into the range it
// was sent to, every op of a transactional batch must carry the batch's key.
// Then a scripted partition split (4 -> 8 ranges) in the middle of a load: the
// worker must re-read the ranges, re-route and lose nothing.
// The emulator keys documents by the first path only, so ids are unique across
// each table and key moves change the first level (tenant).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { epk, startFaultProxy } from '../lib/fault-proxy.mjs';
import { createContainer } from '../lib/emulator.mjs';

const DB = 'shop';
let sink;
let proxy;

before(async () => {
  sink = await startSink();
  proxy = await startFaultProxy({ emulator: sink.emu, pkRanges: 4, validateRouting: true });
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
  // the C implementation of the EPK, for the diagnostics of a misrouted request
  await sink.pg.query(`CREATE FUNCTION cosmos_test_epk(text, text, int) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_epk' LANGUAGE C STRICT`);
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

/** Create the container (kind by the number of columns), then route with partition_key => '{a,b,c}'. */
async function route(table, columns) {
  const kind = columns.length > 1 ? 'MultiHash' : 'Hash';
  const def = await createContainer(sink.emu.endpoint, sink.emu.caFile, DB, table, columns.map((c) => `/${c}`), kind);
  assert.equal(def.partitionKey.kind, kind);
  const pk = columns.length > 1 ? `{${columns.join(',')}}` : columns[0];
  await sink.pg.query(`SELECT cosmos_sink.add_route($1, $2, $3, partition_key => $4::text)`, [table, DB, table, pk]);
  return def.partitionKey;
}

/**
 * A readable account of misrouted requests: the key, the EPK the proxy
 * computed, the EPK the C code computes for it, the range the worker chose and
 * the one that holds the key.
 */
async function misroutes(def) {
  const recs = (await proxy.requests({ kind: 'bulk' })).filter((r) => r.routingFailure);
  const lines = [];
  for (const r of recs.slice(0, 10)) {
    const g = r.routing ?? {};
    let cEpk = '?';
    if (g.partitionKey) {
      try {
        [{ e: cEpk }] = await sink.pg.query('SELECT cosmos_test_epk($1, $2, $3) AS e', [g.partitionKey, def.kind, def.version ?? 1]);
      } catch (e) { cEpk = `error: ${e.message}`; }
    }
    lines.push(`#${r.seq} ${r.routingFailure}: sent to range ${g.range} (ranges gen ${g.gen}${g.stale ? ', stale' : ''})`
      + (g.partitionKey ? `, op ${g.opIndex} id ${g.id} key ${g.partitionKey}: proxy EPK ${g.epk} (range ${g.expected}), C EPK ${cEpk}` : ''));
  }
  return `${recs.length} misrouted bulk requests:\n${lines.join('\n')}`;
}

/** Assertions common to all cases: exact contents, nothing parked, routing right, both request kinds used. */
async function checkRun(table, idColumn, def, { ranges = ['0', '1', '2', '3'], split = false } = {}) {
  await sink.waitCaughtUp({ timeoutMs: 180000 });
  const ledger = await proxy.ledger();
  const r = await sink.verify(table, idColumn, table);
  assert.ok(r.ok, String(r));
  const [{ n }] = await sink.pg.query(`SELECT count(*) AS n FROM cosmos_sink.dead_letters WHERE staging_table = $1::regclass`, [table]);
  assert.equal(Number(n), 0, 'nothing parked');
  if (split) {
    assert.equal(ledger.splits, 1, JSON.stringify(ledger));
    assert.ok(ledger.misrouted > 0, `requests for the old ranges were refused: ${JSON.stringify(ledger)}`);
    assert.equal(ledger.misrouted, ledger.misroutedStale,
      `only requests sent before the worker re-read the ranges are refused\n${await misroutes(def)}`);
  } else {
    assert.equal(ledger.misrouted, 0, await misroutes(def));
  }
  assert.equal(ledger.pkMismatch, 0, JSON.stringify(ledger));
  assert.ok(ledger.byKind.batch > 0, `transactional batches were used: ${JSON.stringify(ledger.byKind)}`);
  assert.ok(ledger.byKind.bulk > 0, `bulk requests were used: ${JSON.stringify(ledger.byKind)}`);
  const bulk = (await proxy.requests({ kind: 'bulk' })).filter((x) => x.status === 200 || x.status === 207);
  const used = new Set(bulk.map((x) => x.pkrangeId));
  assert.ok([...used].every((id) => ranges.includes(id)), `range ids ${[...used]} within ${ranges}`);
  assert.ok(used.size > 1, `bulk requests went to several ranges: ${[...used]}`);
  return { ledger, used };
}

/** JS and C agree on the EPK of the table's keys (jsonb text form, as a sample). */
async function sameEpkInC(table, columns, def) {
  const rows = await sink.pg.query(`SELECT jsonb_build_array(${columns.join(', ')})::text AS pk,
      cosmos_test_epk(jsonb_build_array(${columns.join(', ')})::text, $1, $2) AS e
    FROM (SELECT DISTINCT ${columns.join(', ')} FROM ${table}) k LIMIT 300`, [def.kind, def.version ?? 1]);
  assert.ok(rows.length > 0);
  for (const { pk, e } of rows) assert.equal(e, epk(def, pk), `EPK of ${pk}`);
}

test('3-level hierarchical key (tenant, user_id, session): bulk by EPK over 4 ranges, batches per key', async () => {
  await proxy.reset();
  await sink.pg.query(`CREATE TABLE h3_sessions (id bigint PRIMARY KEY, tenant text NOT NULL, user_id int NOT NULL,
    session uuid NOT NULL, n int NOT NULL, note text, updated_at timestamptz NOT NULL DEFAULT now())`);
  const def = await route('h3_sessions', ['tenant', 'user_id', 'session']);
  assert.deepEqual([def.kind, def.paths], ['MultiHash', ['/tenant', '/user_id', '/session']]);

  // many distinct keys: bulk requests spread over the ranges
  await sink.pg.query(`INSERT INTO h3_sessions (id, tenant, user_id, session, n, note)
    SELECT g, 't' || (g % 23), g % 97 + 1, md5('s' || (g % 1500))::uuid, 0, 'wide ' || g
    FROM generate_series(1, 3000) g`);
  // hot logical partitions: 40 upserts each, in one transaction -> transactional batches
  await sink.pg.query(`INSERT INTO h3_sessions (id, tenant, user_id, session, n, note)
    SELECT 100000 + k * 1000 + i, 'hot' || k, 7000 + k, md5('hot' || k)::uuid, 0, 'hot'
    FROM generate_series(1, 5) k, generate_series(1, 40) i`);
  await sink.waitCaughtUp({ timeoutMs: 180000 });
  // updates (hot keys again in batches), key moves (to another tenant: the emulator sees them too), deletes
  await sink.pg.query(`UPDATE h3_sessions SET n = n + 1, note = 'upd', updated_at = now() WHERE id % 5 = 0 AND id < 100000`);
  await sink.pg.query(`UPDATE h3_sessions SET n = n + 10, note = 'hot again' WHERE id >= 100000`);
  await sink.pg.query(`UPDATE h3_sessions SET tenant = 'moved' || (id % 7), user_id = user_id + 500,
    session = md5('m' || id)::uuid WHERE id % 31 = 0 AND id < 100000`);
  await sink.pg.query(`DELETE FROM h3_sessions WHERE id % 13 = 0 AND id < 100000`);
  await sink.pg.query(`DELETE FROM h3_sessions WHERE id >= 100000 AND id % 10 = 3`);
  await sink.pg.query(`INSERT INTO h3_sessions (id, tenant, user_id, session, n, note)
    SELECT 5000 + g, 'late' || (g % 11), g, gen_random_uuid(), 2, 'late' FROM generate_series(1, 400) g`);

  const { used } = await checkRun('h3_sessions', 'id', def);
  assert.equal(used.size, 4, `all four ranges got bulk requests: ${[...used]}`);
  await sameEpkInC('h3_sessions', ['tenant', 'user_id', 'session'], def);
  // what the proxy saw was keyed by all three levels
  const sample = (await proxy.requests({ kind: 'batch' })).find((x) => x.partitionKey);
  assert.equal(JSON.parse(sample.partitionKey).length, 3, sample.partitionKey);
});

test('single-path Hash v2 container: bulk by EPK over 4 ranges, batches per key', async () => {
  await proxy.reset();
  await sink.pg.query(`CREATE TABLE h1_orders (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
    amount numeric(12,2), status text, updated_at timestamptz NOT NULL DEFAULT now())`);
  const def = await route('h1_orders', ['customer_id']);
  assert.equal(def.version, 2);
  await sink.pg.query(`INSERT INTO h1_orders SELECT g, 'c' || (g % 700), g, 'NEW' FROM generate_series(1, 2500) g`);
  await sink.pg.query(`INSERT INTO h1_orders SELECT 10000 + g, 'whale' || (g % 3), g, 'NEW' FROM generate_series(1, 90) g`);
  await sink.pg.query(`UPDATE h1_orders SET status = 'PAID', amount = amount + 1 WHERE order_id % 4 = 0`);
  await sink.pg.query(`UPDATE h1_orders SET customer_id = 'moved' || (order_id % 9) WHERE order_id % 37 = 0`);
  await sink.pg.query(`DELETE FROM h1_orders WHERE order_id % 11 = 0`);
  const { used } = await checkRun('h1_orders', 'order_id', def);
  assert.equal(used.size, 4, `all four ranges got bulk requests: ${[...used]}`);
  await sameEpkInC('h1_orders', ['customer_id'], def);
});

test('2-level hierarchical key with a partition split (4 -> 8 ranges) during the load', async () => {
  await proxy.set({ splitRangesAfter: 3 });
  await proxy.reset();
  try {
    await sink.pg.query(`CREATE TABLE h2_events (event_id bigint PRIMARY KEY, tenant text NOT NULL, user_id int NOT NULL,
      kind text, payload text)`);
    const def = await route('h2_events', ['tenant', 'user_id']);
    assert.deepEqual([def.kind, def.paths], ['MultiHash', ['/tenant', '/user_id']]);
    // several waves, so requests for the old ranges keep coming after the split
    for (let w = 0; w < 3; w++) {
      await sink.pg.query(`INSERT INTO h2_events SELECT $1::int * 10000 + g, 'tn' || (g % 41), g % 53,
        'wave' || $1::int, repeat('x', 50) FROM generate_series(1, 1200) g`, [w]);
      await sink.pg.query(`INSERT INTO h2_events SELECT 900000 + $1::int * 100 + g, 'hot', 1, 'hot', 'h'
        FROM generate_series(1, 20) g`, [w]);
      await sink.pg.query(`UPDATE h2_events SET payload = 'u' || $1::int WHERE event_id % 6 = 1`, [w]);
      await sink.pg.query(`DELETE FROM h2_events WHERE event_id % 17 = $1::int`, [w]);
      if (w === 0) await sink.waitCaughtUp({ timeoutMs: 180000 });
    }
    const { ledger, used } = await checkRun('h2_events', 'event_id', def, {
      split: true, ranges: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11'],
    });
    assert.ok(ledger.byKind.pkranges >= 2, `the worker re-read the ranges: ${JSON.stringify(ledger.byKind)}`);
    const after = [...used].filter((id) => Number(id) >= 4);
    assert.ok(after.length > 1, `bulk requests went to the new ranges: ${[...used]}`);
    // after the split, every request the proxy served went to a child range
    const recs = await proxy.requests({ kind: 'bulk' });
    const firstNew = recs.find((x) => Number(x.pkrangeId) >= 4);
    const late = recs.filter((x) => x.seq > firstNew.seq && Number(x.pkrangeId) < 4);
    assert.equal(late.length, 0, `old range ids used after the re-read: ${JSON.stringify(late.slice(0, 3))}`);
    await sameEpkInC('h2_events', ['tenant', 'user_id'], def);
  } finally {
    await proxy.set({ splitRangesAfter: 0 });
  }
});
