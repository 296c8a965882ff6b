// cosmos_sink.max_ru_per_second = 'auto': the RU budget follows what each
// container has provisioned (its own offer, its database's shared one,
// autoscale's maximum) times cosmos_sink.ru_share, read through the fault
// proxy's offers; the sink stays inside its share while another application
// spends the rest; serverless accounts and identities that may not read
// offers forward without a budget and say why.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { EMULATOR_KEY } from '../lib/emulator.mjs';
import { startRuConsumer } from '../lib/ru-consumer.mjs';
import { waitFor } from '../lib/util.mjs';
import { compareDocs, expectedDocsSql, readContainer } from '../lib/verify.mjs';

let sink;
let proxy;
before(async () => {
  sink = await startSink();
  proxy = await startFaultProxy({ emulator: sink.emu });
  await sink.pg.setConf({
    'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile,
    'cosmos_sink.max_ru_per_second': 'auto', 'cosmos_sink.ru_share': 0.5,
  });
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

const TABLE = (t) => `CREATE TABLE ${t} (id bigint PRIMARY KEY, k text NOT NULL, payload text)`;
// rows of ~600 bytes: one write is 10 RU in the proxy's model
const FILL = (t, from, to) => `INSERT INTO ${t} SELECT g, 'k' || g % 7, repeat('x', 600)
  FROM generate_series(${from}, ${to}) g`;

async function budgetOf(table) {
  const [r] = await sink.pg.query(`SELECT provisioned_ru_per_second AS provisioned, ru_budget AS budget,
    ru_budget_source AS source FROM cosmos_sink.container_stats WHERE staging_table = $1::regclass`, [table]);
  return r;
}

// Route a table whose container the proxy gives an offer, and wait until the budget shows
async function routeWithBudget(table, want) {
  await sink.pg.query(TABLE(table));
  await sink.route(table, table, 'k');
  await sink.pg.query(FILL(table, 1, 3));
  return waitFor(async () => {
    const b = await budgetOf(table);
    return b?.source && want.test(b.source) ? b : null;
  }, { timeoutMs: 30000, what: `${table}: budget source ${want}` });
}

test('the sink uses its share of a manual offer while a second client spends the rest', async () => {
  const PROVISIONED = 1000;
  const SHARE = 0.5;
  await proxy.set({ offers: { 'shop/rb_manual': { throughput: PROVISIONED } } });
  const b = await routeWithBudget('rb_manual', /container's 1000 RU\/s/);
  assert.equal(b.provisioned, PROVISIONED);
  // the budget in force keeps 5% headroom for 1-second windows (README)
  assert.equal(b.budget, PROVISIONED * SHARE * 0.95);
  await sink.waitCaughtUp();

  const consumer = await startRuConsumer({
    endpoint: proxy.endpoint, key: EMULATOR_KEY, ca: proxy.caFile, db: 'shop', coll: 'rb_manual',
    pkPath: 'k', ruPerSecond: PROVISIONED * (1 - SHARE),
  });
  let sinkRecords;
  try {
    const t0 = Date.now();
    // a backlog of ~14,000 RU: about 30 s at the sink's share
    await sink.pg.query(FILL('rb_manual', 100, 1500));
    await sink.waitCaughtUp({ timeoutMs: 120000 });
    sinkRecords = (await proxy.requests()).filter((r) => /^cosmos_sink\//.test(r.agent ?? '')
      && (r.kind === 'batch' || r.kind === 'bulk') && r.at >= t0 - 1000);
  } finally {
    const other = await consumer.stop();
    assert.ok(other.ru > 0, `the second client spent RU: ${JSON.stringify(other)}`);
  }
  // steady state: from the first write to the last one, less a second at each end
  const acked = sinkRecords.filter((r) => r.status === 200 || r.status === 207);
  const first = Math.min(...acked.map((r) => r.at)) + 1000;
  const last = Math.max(...acked.map((r) => r.at)) - 1000;
  assert.ok(last - first >= 15000, `long enough to measure: ${last - first} ms`);
  const ru = acked.filter((r) => r.at >= first && r.at < last).reduce((s, r) => s + r.ru, 0);
  const used = ru / ((last - first) / 1000) / (PROVISIONED * SHARE);
  const throttled = sinkRecords.filter((r) => r.status === 429).length / sinkRecords.length;
  console.log(`share used ${(100 * used).toFixed(1)}%, throttled ${(100 * throttled).toFixed(2)}% of ${sinkRecords.length} requests`);
  assert.ok(used >= 0.9, `at least 90% of the share used: ${(100 * used).toFixed(1)}%`);
  assert.ok(used <= 1.02, `not over the share: ${(100 * used).toFixed(1)}%`);
  assert.ok(throttled <= 0.01, `at most 1% of the sink's requests throttled: ${(100 * throttled).toFixed(2)}%`);
  // the table's documents are exact; the second client's are its own (partition key 'consumer')
  const expected = (await sink.pg.query(expectedDocsSql('rb_manual', 'id'))).map((x) => x.doc);
  const actual = (await readContainer({ endpoint: sink.emu.endpoint, caFile: sink.emu.caFile, database: 'shop', container: 'rb_manual' }))
    .filter((d) => d.k !== 'consumer');
  const r = compareDocs(expected, actual);
  assert.ok(r.ok, String(r));
});

test('autoscale counts its maximum; a shared database offer is one budget for its containers', async () => {
  await proxy.set({ offers: { 'shop/rb_auto': { autoscaleMax: 4000 }, shared: { throughput: 2000 } } });
  const a = await routeWithBudget('rb_auto', /autoscale maximum of 4000 RU\/s/);
  assert.deepEqual([a.provisioned, a.budget], [4000, 4000 * 0.5 * 0.95]);
  for (const t of ['rb_shared1', 'rb_shared2']) {
    await sink.pg.query(TABLE(t));
    await sink.route(t, t, 'k', { database: 'shared' });
    await sink.pg.query(FILL(t, 1, 3));
  }
  for (const t of ['rb_shared1', 'rb_shared2']) {
    const s = await waitFor(async () => {
      const b = await budgetOf(t);
      return /database's shared 2000 RU\/s/.test(b?.source ?? '') ? b : null;
    }, { timeoutMs: 30000, what: `${t}: shared database budget` });
    assert.deepEqual([s.provisioned, s.budget], [2000, 2000 * 0.5 * 0.95]);
  }
  await sink.waitCaughtUp();
});

test('a storm of 429s after the offer was lowered makes the sink read it again', async () => {
  await proxy.set({ offers: { 'shop/rb_storm': { throughput: 4000 } } });
  await routeWithBudget('rb_storm', /container's 4000 RU\/s/);
  await sink.waitCaughtUp();
  // the owner lowers the throughput: the sink's budget (1900) is now over it
  await proxy.set({ offers: { 'shop/rb_storm': { throughput: 400 } } });
  await sink.pg.query(FILL('rb_storm', 100, 1100));
  const b = await waitFor(async () => {
    const x = await budgetOf('rb_storm');
    return /container's 400 RU\/s/.test(x.source) ? x : null;
  }, { timeoutMs: 60000, what: 'the lowered offer read again' });
  assert.equal(b.budget, 400 * 0.5 * 0.95);
  await sink.waitCaughtUp({ timeoutMs: 120000 });
  const r = await sink.verify('rb_storm', 'id', 'rb_storm');
  assert.ok(r.ok, String(r));
});

test('a container and database without an offer: no budget, and it says so', async () => {
  const b = await routeWithBudget('rb_none', /no offer on the container or its database/);
  assert.deepEqual([b.provisioned, b.budget], [null, null]);
  await sink.waitCaughtUp();
});

test('serverless: no offer, no budget, and it says so; forwarding goes on', async () => {
  await proxy.set({ offersMode: 'serverless' });
  try {
    const b = await routeWithBudget('rb_serverless', /serverless account/);
    assert.equal(b.budget, null);
    assert.equal(b.provisioned, null);
    await sink.waitCaughtUp();
    const st = await sink.status();
    assert.ok(!/warning/.test(st.last_error ?? ''), `serverless is no warning: ${st.last_error}`);
    const r = await sink.verify('rb_serverless', 'id', 'rb_serverless');
    assert.ok(r.ok, String(r));
  } finally {
    await proxy.set({ offersMode: 'normal' });
  }
});

test('credentials that may not read offers: no budget, a standing warning naming the fix', async () => {
  await proxy.set({ offersMode: 'forbidden' });
  try {
    const b = await routeWithBudget('rb_forbidden', /may not read offers/);
    assert.equal(b.budget, null);
    await sink.pg.query(FILL('rb_forbidden', 10, 200));
    await sink.waitCaughtUp();
    // the warning outlives the successful writes after it
    const st = await sink.status();
    assert.match(st.last_error ?? '', /^warning: cosmos_sink\.max_ru_per_second = 'auto' cannot read the provisioned throughput of shop\/rb_forbidden.*use the account key, or set max_ru_per_second to a number.*HTTP 403/);
    assert.ok(['streaming', 'idle'].includes(st.state), `a warning, not an error: ${st.state}`);
    const r = await sink.verify('rb_forbidden', 'id', 'rb_forbidden');
    assert.ok(r.ok, String(r));
    // a number instead of 'auto': the warning goes, the number is the budget
    await sink.pg.setConf({ 'cosmos_sink.max_ru_per_second': 3000 });
    await waitFor(async () => !/warning/.test((await sink.status()).last_error ?? '')
      && (await budgetOf('rb_forbidden')).source === 'cosmos_sink.max_ru_per_second', { timeoutMs: 30000, what: 'warning cleared' });
    assert.equal((await budgetOf('rb_forbidden')).budget, 3000);
  } finally {
    await proxy.set({ offersMode: 'normal' });
    await sink.pg.setConf({ 'cosmos_sink.max_ru_per_second': 'auto' });
  }
});
