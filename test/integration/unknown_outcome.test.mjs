// Writes whose outcome is unknown (issue 13 item 10). A request the worker
// gave up on (timeout, 408, 5xx) may still be applied by Cosmos DB later. The
// fault proxy holds a write past cosmos_sink.request_timeout_ms and then
// forwards it: with the fence off, the document's newer state, sent sooner,
// is overwritten by the late write (the risk, measured); with the fence
// (unknown_outcome_delay_ms longer than the hold) the newer state is sent
// after it and wins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';
import { startFaultProxy } from '../lib/fault-proxy.mjs';
import { sleep, waitFor } from '../lib/util.mjs';

const HOLD_MS = 2500;     // the late write lands this long after it was sent
const TIMEOUT_MS = 1000;  // the worker gives up on it after this

let sink;
let proxy;
before(async () => {
  sink = await startSink({ conf: { 'cosmos_sink.request_timeout_ms': TIMEOUT_MS } });
  proxy = await startFaultProxy({ emulator: sink.emu });
  await sink.pg.setConf({ 'cosmos_sink.endpoint': proxy.endpoint, 'cosmos_sink.ca_file': proxy.caFile });
  await sink.pg.query('CREATE TABLE uo (id int PRIMARY KEY, k text NOT NULL, v text)');
  await sink.route('uo', 'uo', 'k');
});
after(async () => {
  await proxy?.stop();
  await sink?.stop();
});

async function docState(id) {
  const c = sink.emu.client();
  try {
    const { resource } = await c.database('shop').container('uo').item(String(id), 'k').read();
    return resource?.v;
  } finally {
    c.dispose();
  }
}

// S1's write is held past the timeout and lands late; S2 is committed meanwhile
async function lateWriteScenario(id) {
  await sink.pg.query(`INSERT INTO uo VALUES (${id}, 'k', 'S0')`);
  await sink.waitCaughtUp();
  await proxy.failNext(1, { fault: 'stall', stallMs: HOLD_MS });
  await sink.pg.query(`UPDATE uo SET v = 'S1' WHERE id = ${id}`);
  await sleep(300);
  await sink.pg.query(`UPDATE uo SET v = 'S2' WHERE id = ${id}`);
  await sink.waitCaughtUp();
  await waitFor(async () => (await proxy.ledger()).stalls >= 1, { timeoutMs: 10000, what: 'the held write forwarded' });
  await sleep(HOLD_MS); // whatever was held has landed by now
  return docState(id);
}

test('with the fence off, a late write of an older state overwrites the newer one (the measured risk)', async () => {
  await sink.pg.setConf({ 'cosmos_sink.unknown_outcome_delay_ms': 0 });
  await proxy.reset();
  assert.equal(await lateWriteScenario(1), 'S1', 'the older state landed last');
  await sink.pg.query(`UPDATE uo SET v = 'S3' WHERE id = 1`); // repaired by a newer change
  await sink.waitCaughtUp();
});

test('with the fence, the newer state waits for the late write and wins', async () => {
  await sink.pg.setConf({ 'cosmos_sink.unknown_outcome_delay_ms': HOLD_MS + 1500 });
  await proxy.reset();
  assert.equal(await lateWriteScenario(2), 'S2');
  const r = await sink.verify('uo', 'id', 'uo');
  assert.ok(r.ok, String(r));
});
