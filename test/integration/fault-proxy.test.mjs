// The fault proxy itself (lib/fault-proxy.mjs): signature checking against
// the official vector and live requests (official SDK and raw HTTPS), RU
// charges and the ledger, injected 429s (seeded, replayable) and the RU/s
// budget, real atomic-batch semantics, the service's limits, truncation,
// stalls, resets, scripted errors, container statuses and down/up.
// Loopback only; everything is stopped in after().
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { EMULATOR_KEY, createContainer, startEmulator } from '../lib/emulator.mjs';
import {
  aadAuthorization, checkAuthorization, epk, epkMultiHash, epkV1, epkV2, evenPkRanges, findPkRange, formatCharge,
  masterAuthorization, masterSignature, murmur3x64_128, murmur3x86_32, resourceFromPath, ruForOp, samePartitionKey,
  splitPkRanges, startFaultProxy, stringToSign,
} from '../lib/fault-proxy.mjs';
import { autoscaleFloor, validateOffers } from '../lib/fault-proxy-core.mjs';
import { startRuConsumer } from '../lib/ru-consumer.mjs';
import { Cleanup, sleep, waitFor } from '../lib/util.mjs';

const DB = 'shop';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const T = { timeout: 60000 };

// ---------------------------------------------------------------------------
// The official vector needs no server
// ---------------------------------------------------------------------------

describe('signature checker (reference §1.3 official vector)', () => {
  const key = 'dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw==';
  const date = 'Thu, 27 Apr 2017 00:51:12 GMT';
  const now = Date.parse(date);
  const docsHeader = 'type%3dmaster%26ver%3d1.0%26sig%3dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2bc%2bc%3d';
  const req = (authorization, extra = {}) => ({
    method: 'GET', path: '/dbs/ToDoList',
    headers: { authorization, 'x-ms-date': date, 'x-ms-version': '2020-07-15', ...extra },
  });

  test('payload, signature and header are the documented ones', () => {
    assert.equal(stringToSign('GET', 'dbs', 'dbs/ToDoList', date), 'get\ndbs\ndbs/ToDoList\nthu, 27 apr 2017 00:51:12 gmt\n\n');
    assert.equal(Buffer.byteLength(stringToSign('GET', 'dbs', 'dbs/ToDoList', date)), 52);
    assert.equal(masterSignature(key, 'GET', 'dbs', 'dbs/ToDoList', date), 'c09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu+c+c=');
    assert.equal(masterAuthorization(key, 'GET', 'dbs', 'dbs/ToDoList', date),
      'type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D');
  });

  test('the checker accepts the documented header (either hex case) and rejects the negative controls', () => {
    assert.deepEqual(checkAuthorization(req(docsHeader), { key, now }), { ok: true, type: 'master' });
    assert.equal(checkAuthorization(req('type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D'), { key, now }).ok, true);
    for (const wrong of ['a7YZaHdlmUUR2n9H6JtkhFiuJZi1xVrLf35iK3FNhxA=', '2VcgFqfJCqanOOk6Bt9IMeGnOC/sHzYjtO1mMqWVucU=',
      'l5TzY/mUzYGoohgCL4huognzuf0eGlU5/Q6klq03F1w=']) {
      const r = checkAuthorization(req(encodeURIComponent(`type=master&ver=1.0&sig=${wrong}`)), { key, now });
      assert.equal(r.ok, false);
      assert.equal(r.reason, 'bad-signature');
      assert.equal(r.payload, 'get\ndbs\ndbs/ToDoList\nthu, 27 apr 2017 00:51:12 gmt\n\n');
      assert.match(r.message, /^The input authorization token can't serve the request/);
    }
    // the same header with another key, a stale clock, no x-ms-version, no x-ms-date
    assert.equal(checkAuthorization(req(docsHeader), { key: EMULATOR_KEY, now }).reason, 'bad-signature');
    assert.equal(checkAuthorization(req(docsHeader), { key, now: now + 15 * 60000 }).ok, true);
    assert.equal(checkAuthorization(req(docsHeader), { key, now: now + 15 * 60000 + 1 }).reason, 'stale-date');
    assert.equal(checkAuthorization(req(docsHeader), { key, now: now - 16 * 60000 }).reason, 'stale-date');
    assert.equal(checkAuthorization(req(docsHeader, { 'x-ms-version': undefined }), { key, now }).reason, 'no-version');
    assert.equal(checkAuthorization(req(docsHeader, { 'x-ms-date': undefined }), { key, now }).reason, 'no-date');
    // the path decides what is signed: /dbs signs type dbs with an empty link
    assert.equal(checkAuthorization({ ...req(docsHeader), path: '/dbs' }, { key, now }).reason, 'bad-signature');
    // AAD only when a token is expected, and only that token
    assert.equal(checkAuthorization(req(aadAuthorization('tok')), { key, now }).reason, 'bad-aad-token');
    assert.equal(checkAuthorization(req(aadAuthorization('tok')), { key, now, aadToken: 'tok' }).ok, true);
    assert.equal(checkAuthorization(req(aadAuthorization('tok2')), { key, now, aadToken: 'tok' }).ok, false);
  });

  test('resource type and link per path (reference §1.4)', () => {
    const cases = [
      ['/', '', ''],
      ['/dbs', 'dbs', ''],
      ['/dbs/ToDoList', 'dbs', 'dbs/ToDoList'],
      ['/dbs/d/colls', 'colls', 'dbs/d'],
      ['/dbs/d/colls/c', 'colls', 'dbs/d/colls/c'],
      ['/dbs/d/colls/c/pkranges', 'pkranges', 'dbs/d/colls/c'],
      ['/dbs/d/colls/c/docs', 'docs', 'dbs/d/colls/c'],
      ['/dbs/d/colls/c/docs/a%20b%2Fc?x=1', 'docs', 'dbs/d/colls/c/docs/a b/c'],
      ['/dbs/my%20db/colls/c%C3%A9/docs', 'docs', 'dbs/my db/colls/cé'],
      ['/offers', 'offers', ''],
      ['/offers/AbC1', 'offers', 'abc1'],
    ];
    for (const [p, type, link] of cases) assert.deepEqual(resourceFromPath(p), { resourceType: type, resourceLink: link }, p);
  });

  test('offers: a point read signs the lowercased offer rid, not offers/<rid>', () => {
    const date = new Date().toUTCString();
    const get = (link) => ({ method: 'GET', path: '/offers/AbC1', headers: {
      'x-ms-date': date, 'x-ms-version': '2020-07-15', authorization: masterAuthorization(EMULATOR_KEY, 'GET', 'offers', link, date) } });
    assert.deepEqual(checkAuthorization(get('abc1'), { key: EMULATOR_KEY }), { ok: true, type: 'master' });
    assert.equal(checkAuthorization(get('AbC1'), { key: EMULATOR_KEY }).reason, 'bad-signature');
    assert.equal(checkAuthorization(get('offers/abc1'), { key: EMULATOR_KEY }).reason, 'bad-signature');
  });

  test('offers: validation and the autoscale floor', () => {
    assert.deepEqual(validateOffers({ 'd/c': { throughput: 400 }, d: { autoscaleMax: 4000 } }), { 'd/c': { throughput: 400 }, d: { autoscaleMax: 4000 } });
    for (const [bad, why] of [[[], /must be an object/], [{ 'a/b/c': { throughput: 1 } }, /not 'db' or 'db\/coll'/],
      [{ a: { throughput: 0 } }, /positive integer/], [{ a: { throughput: 1, autoscaleMax: 2 } }, /\{throughput: N\} or \{autoscaleMax: N\}/],
      [{ a: { max: 1 } }, /\{throughput: N\} or \{autoscaleMax: N\}/], [{ '/x': { throughput: 1 } }, /not 'db'/]]) {
      assert.throws(() => validateOffers(bad), why, JSON.stringify(bad));
    }
    assert.deepEqual([1000, 4000, 4500, 10000].map(autoscaleFloor), [100, 400, 500, 1000]);
  });

  test('ruForOp: 10 RU per started KiB of the item, min 10; delete 10', () => {
    const sized = (n) => {
      const doc = { id: 'x', pk: 'p', pad: '' };
      doc.pad = 'a'.repeat(n - JSON.stringify(doc).length);
      assert.equal(Buffer.byteLength(JSON.stringify(doc)), n);
      return { operationType: 'Upsert', resourceBody: doc };
    };
    assert.equal(ruForOp(sized(30)), 10);
    assert.equal(ruForOp(sized(1024)), 10);
    assert.equal(ruForOp(sized(1025)), 20);
    assert.equal(ruForOp(sized(4096)), 40);
    assert.equal(ruForOp({ operationType: 'Delete', id: 'x' }), 10);
    assert.equal(ruForOp({ operationType: 'Read', id: 'x' }), 1);
    assert.equal(formatCharge(30), '30.00');
    assert.equal(formatCharge(0.1 + 0.2), '0.30');
  });
});

// ---------------------------------------------------------------------------
// Live: emulator + proxy
// ---------------------------------------------------------------------------

describe('fault proxy in front of the emulator', { timeout: 300000 }, () => {
  const cleanup = new Cleanup();
  let emu;
  let proxy;
  let ca;
  let collSeq = 0;

  before(async () => {
    emu = await startEmulator();
    cleanup.add(() => emu.stop());
    proxy = await startFaultProxy({ emulator: emu });
    cleanup.add(() => proxy.stop());
    ca = readFileSync(proxy.caFile);
  });
  after(() => cleanup.run());
  beforeEach(async () => {
    await proxy.up();
    await proxy.clear();
    await proxy.set({ atomicMode: 'precheck', realPkRanges: true, maxOps: 100, maxRequestBytes: 2 * 1024 * 1024,
      maxItemBytes: 2 * 1024 * 1024, clockOffsetMs: 0, faultKinds: ['batch', 'bulk'], seed: 1 });
    await proxy.setAadToken(null);
    await proxy.reset();
  });

  /** A fresh container (created through the proxy with the SDK: signatures must pass). */
  async function newContainer(prefix) {
    const id = `${prefix}_${++collSeq}`;
    await createContainer(proxy.endpoint, proxy.caFile, DB, id, '/pk');
    return id;
  }

  /** All documents of a container, read from the emulator directly: Map id -> doc. */
  async function docsIn(coll) {
    const c = emu.client();
    try {
      const { resources } = await c.database(DB).container(coll).items.query('SELECT * FROM c').fetchAll();
      return new Map(resources.map((d) => [d.id, d]));
    } finally {
      c.dispose();
    }
  }

  /** Seed documents directly in the emulator (bypassing the proxy). */
  async function seed(coll, docs) {
    const c = emu.client();
    try {
      for (const d of docs) await c.database(DB).container(coll).items.upsert(d);
    } finally {
      c.dispose();
    }
  }

  /**
   * A raw HTTPS request to the proxy, signed with `key` unless authorization is
   * given. Resolves {status, headers, text, json}; rejects on transport errors
   * (code 'TRUNCATED' when the answer was cut after the headers).
   */
  function raw({ method = 'GET', path, headers = {}, body, key = EMULATOR_KEY, date = new Date().toUTCString(),
    authorization, timeoutMs = 10000 }) {
    const { resourceType, resourceLink } = resourceFromPath(path);
    const h = {
      'x-ms-date': date, 'x-ms-version': '2020-07-15', accept: 'application/json',
      authorization: authorization ?? masterAuthorization(key, method, resourceType, resourceLink, date),
      ...headers,
    };
    for (const k of Object.keys(h)) if (h[k] === undefined) delete h[k];
    const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    if (payload) { h['content-type'] ??= 'application/json'; h['content-length'] = String(payload.length); }
    return new Promise((resolve, reject) => {
      const r = https.request({ host: '127.0.0.1', servername: 'localhost', port: proxy.port, method, path, headers: h, ca, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', () => { /* reported by close */ });
        res.on('close', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (!res.complete) {
            reject(Object.assign(new Error(`answer cut after ${text.length} bytes`), { code: 'TRUNCATED', status: res.statusCode, received: text }));
            return;
          }
          let json;
          try { json = JSON.parse(text); } catch { json = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
      });
      r.setTimeout(timeoutMs, () => r.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
      r.on('error', reject);
      r.end(payload);
    });
  }

  /** A batch/bulk request as the worker sends it. */
  function batch(coll, ops, { atomic = false, pk, continueOnError = !atomic, ...rest } = {}) {
    const headers = {
      'x-ms-cosmos-is-batch-request': 'True',
      'x-ms-cosmos-batch-atomic': atomic ? 'True' : 'False',
      'x-ms-cosmos-batch-continue-on-error': continueOnError ? 'True' : 'False',
    };
    if (atomic) headers['x-ms-documentdb-partitionkey'] = JSON.stringify([pk]);
    else headers['x-ms-documentdb-partitionkeyrangeid'] = '0';
    return raw({ method: 'POST', path: `/dbs/${DB}/colls/${coll}/docs`, headers, body: ops, ...rest });
  }

  const upsert = (doc, pk = doc.pk) => ({ operationType: 'Upsert', partitionKey: JSON.stringify([pk]), resourceBody: doc });
  const del = (id, pk) => ({ operationType: 'Delete', id, partitionKey: JSON.stringify([pk]) });
  const statuses = (r) => r.json.map((x) => x.statusCode);

  test('signatures: the SDK passes; tampered, stale, unsigned, wrong-key and wrong-link requests get 401', T, async () => {
    const coll = await newContainer('auth');
    const client = proxy.client();
    try {
      const c = client.database(DB).container(coll);
      await c.items.upsert({ id: 'a', pk: 'p', v: 1 });
      assert.equal((await c.item('a', 'p').read()).resource.v, 1);
      await c.items.query('SELECT * FROM c').fetchAll();
    } finally {
      client.dispose();
    }
    assert.equal((await proxy.ledger()).unauthorized, 0);

    const wrongKey = proxy.client({ key: Buffer.alloc(64, 7).toString('base64') });
    try {
      await assert.rejects(wrongKey.database(DB).container(coll).read(), (e) => e.code === 401);
    } finally {
      wrongKey.dispose();
    }

    const path = `/dbs/${DB}/colls/${coll}`;
    assert.equal((await raw({ path })).status, 200);
    const date = new Date().toUTCString();
    const good = decodeURIComponent(masterAuthorization(EMULATOR_KEY, 'GET', 'colls', `dbs/${DB}/colls/${coll}`, date));
    const sig = good.split('&sig=')[1];
    const flipped = sig[0] === 'A' ? `B${sig.slice(1)}` : `A${sig.slice(1)}`;
    const tampered = await raw({ path, date, authorization: encodeURIComponent(`type=master&ver=1.0&sig=${flipped}`) });
    assert.equal(tampered.status, 401);
    assert.equal(tampered.json.code, 'Unauthorized');
    assert.match(tampered.json.message, /^The input authorization token can't serve the request/);
    assert.ok(tampered.json.message.includes(`get\ncolls\ndbs/${DB}/colls/${coll}\n${date.toLowerCase()}\n\n`), tampered.json.message);
    assert.ok(!tampered.json.message.includes(EMULATOR_KEY));
    assert.equal((await raw({ path, date: new Date(Date.now() - 20 * 60000).toUTCString() })).status, 401);
    assert.equal((await raw({ path, date: new Date(Date.now() + 20 * 60000).toUTCString() })).status, 401);
    assert.equal((await raw({ path, headers: { 'x-ms-version': undefined } })).status, 401);
    assert.equal((await raw({ path, headers: { 'x-ms-date': undefined } })).status, 401);
    assert.equal((await raw({ path, authorization: undefined, headers: { authorization: undefined } })).status, 401);
    // signed for the wrong resource: a point read of the docs feed, or the container link for pkranges
    const wrongLink = masterAuthorization(EMULATOR_KEY, 'GET', 'pkranges', `dbs/${DB}/colls/${coll}/pkranges`, date);
    assert.equal((await raw({ path: `${path}/pkranges`, date, authorization: wrongLink })).status, 401);
    assert.equal((await raw({ path: `${path}/pkranges` })).status, 200);
    // a batch signs post / docs / the container link
    const okBatch = await batch(coll, [upsert({ id: 'b', pk: 'p' })]);
    assert.equal(okBatch.status, 200);
    const badBatch = await batch(coll, [upsert({ id: 'c', pk: 'p' })], {
      date, authorization: masterAuthorization(EMULATOR_KEY, 'POST', 'docs', `dbs/${DB}/colls/${coll}/docs`, date),
    });
    assert.equal(badBatch.status, 401);
    assert.ok(!(await docsIn(coll)).has('c'), 'a rejected batch must not be applied');

    // AAD tokens: only when configured, only that token
    assert.equal((await raw({ path, authorization: aadAuthorization('token-1') })).status, 401);
    await proxy.setAadToken('token-1');
    assert.equal((await raw({ path, authorization: aadAuthorization('token-1') })).status, 200);
    assert.equal((await raw({ path, authorization: aadAuthorization('token-2') })).status, 401);
    await proxy.setAadToken(null);
    assert.equal((await raw({ path, authorization: aadAuthorization('token-1') })).status, 401);

    // the server's clock 20 min ahead: fresh signatures are stale
    await proxy.set({ clockOffsetMs: 20 * 60000 });
    assert.equal((await raw({ path })).status, 401);
    await proxy.set({ clockOffsetMs: 0 });
    const l = await proxy.ledger();
    assert.equal(l.unauthorized, 13);
    assert.equal(l.byStatus['401'], 13);
    const recs = await proxy.requests({ kind: 'container' });
    assert.ok(recs.some((r) => r.authFailure === 'stale-date') && recs.some((r) => r.authFailure === 'bad-signature'));
  });

  test('RU charges: per op by size, header = sum, exact ledger', T, async () => {
    const coll = await newContainer('ru');
    await seed(coll, [{ id: 'old', pk: 'p1' }]);
    const pad = (id, pk, bytes) => {
      const doc = { id, pk, pad: '' };
      doc.pad = 'z'.repeat(bytes - JSON.stringify(doc).length);
      return doc;
    };
    const bulkOps = [upsert(pad('a', 'p1', 200)), upsert(pad('b', 'p2', 1024)), upsert(pad('c', 'p1', 1025)),
      upsert(pad('d', 'p3', 5000)), del('old', 'p1'), del('never', 'p2'), upsert({ id: 'e', pk: 'p1', s: 'é'.repeat(600) })];
    const want = [10, 10, 20, 50, 10, 0, 20];
    assert.deepEqual(bulkOps.map((op, i) => (i === 5 ? 0 : ruForOp(op))), want);
    const r1 = await batch(coll, bulkOps);
    assert.equal(r1.status, 207, 'a bulk answer with a failed op is multi-status');
    assert.deepEqual(statuses(r1), [201, 201, 201, 201, 204, 404, 201]);
    assert.deepEqual(r1.json.map((x) => x.requestCharge), want);
    const sum1 = want.reduce((a, b) => a + b, 0);
    assert.equal(r1.headers['x-ms-request-charge'], formatCharge(sum1));
    assert.match(r1.headers['x-ms-activity-id'], UUID);

    const atomicOps = [upsert(pad('f', 'p9', 3000), 'p9'), upsert(pad('g', 'p9', 100), 'p9')];
    const r2 = await batch(coll, atomicOps, { atomic: true, pk: 'p9' });
    assert.equal(r2.status, 200);
    assert.deepEqual(statuses(r2), [201, 201]);
    assert.equal(r2.headers['x-ms-request-charge'], '40.00');
    assert.notEqual(r2.headers['x-ms-activity-id'], r1.headers['x-ms-activity-id']);

    // upserting again: 200 replaced, same charge
    const r3 = await batch(coll, [upsert(pad('a', 'p1', 200))]);
    assert.deepEqual(statuses(r3), [200]);
    assert.equal(r3.headers['x-ms-request-charge'], '10.00');

    const l = await proxy.ledger();
    assert.equal(l.ru, sum1 + 40 + 10);
    assert.equal(l.writeRequests, 3);
    assert.equal(l.ops, 7 + 2 + 1);
    assert.equal(l.upserts, 5 + 2 + 1);
    assert.equal(l.deletes, 1);
    assert.equal(l.deletesNotFound, 1);
    assert.deepEqual(l.opsByStatus, { 200: 1, 201: 7, 204: 1, 404: 1 });
    assert.equal(l.byStatus['207'], 1);
    const recs = await proxy.requests();
    const writes = recs.filter((r) => r.kind === 'batch' || r.kind === 'bulk');
    assert.deepEqual(writes.map((r) => [r.kind, r.ops, r.status, r.ru]), [['bulk', 7, 207, sum1], ['batch', 2, 200, 40], ['bulk', 1, 200, 10]]);
    assert.equal(writes[0].pkrangeId, '0');
    assert.equal(writes[1].partitionKey, '["p9"]');
    assert.ok(writes.every((r) => r.acknowledged && r.durationMs >= 0));
    // the emulator holds what was answered
    const docs = await docsIn(coll);
    assert.deepEqual([...docs.keys()].sort(), ['a', 'b', 'c', 'd', 'e', 'f', 'g']);

    // the SDK's own bulk goes through too (pkranges with string ids, ranges routed)
    const client = proxy.client();
    try {
      const res = await client.database(DB).container(coll).items.bulk([
        { operationType: 'Upsert', resourceBody: { id: 'h', pk: 'p5' } },
        { operationType: 'Delete', id: 'h2', partitionKey: 'p5' },
      ]);
      assert.deepEqual(res.map((x) => [x.statusCode, x.requestCharge]), [[201, 10], [404, 0]]);
      const b = await client.database(DB).container(coll).items.batch([
        { operationType: 'Upsert', resourceBody: { id: 'i', pk: 'p6' } },
        { operationType: 'Upsert', resourceBody: { id: 'j', pk: 'p6' } },
      ], 'p6');
      assert.equal(b.code, 200);
    } finally {
      client.dispose();
    }
    assert.equal((await proxy.ledger()).ru, sum1 + 40 + 10 + 10 + 20);
  });

  test('429 injection: answered 429/3200 with retry-after, never applied; seeded and replayable', T, async () => {
    const coll = await newContainer('thr');
    await proxy.set({ throttleRate: 1, retryAfterMs: 75 });
    const r = await batch(coll, [upsert({ id: 't1', pk: 'p' })]);
    assert.equal(r.status, 429);
    assert.equal(r.headers['x-ms-retry-after-ms'], '75');
    assert.equal(r.headers['x-ms-substatus'], '3200');
    assert.equal(r.headers['x-ms-request-charge'], '0.00');
    assert.equal(r.json.code, 'TooManyRequests');
    assert.ok(!(await docsIn(coll)).has('t1'));
    let l = await proxy.ledger();
    assert.equal(l.throttled, 1);
    assert.equal(l.ru, 0);
    assert.equal(l.failedInjected, 0);
    assert.equal((await proxy.requests({ kind: 'bulk' }))[0].injected, '429');

    // the same seed gives the same pattern; another seed another one
    const pattern = async (n) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push((await batch(coll, [upsert({ id: `s${i}`, pk: 'p' })])).status);
      return out.join(',');
    };
    await proxy.set({ throttleRate: 0.5, seed: 7 });
    const a = await pattern(16);
    await proxy.set({ seed: 7 });
    const b = await pattern(16);
    await proxy.set({ seed: 8 });
    const c = await pattern(16);
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.ok(a.includes('429') && a.includes('200'), a);
    l = await proxy.ledger();
    assert.equal(l.throttled, 1 + [a, b, c].join(',').split(',').filter((s) => s === '429').length);

    // the SDK retries 429s by itself (point writes made eligible here)
    await proxy.reset();
    await proxy.set({ throttleRate: 0.5, retryAfterMs: 5, faultKinds: ['other', 'batch', 'bulk'] });
    const client = proxy.client();
    try {
      for (let i = 0; i < 10; i++) await client.database(DB).container(coll).items.upsert({ id: `sdk${i}`, pk: 'p' });
    } finally {
      client.dispose();
    }
    assert.ok((await proxy.ledger()).throttled > 0);
    const docs = await docsIn(coll);
    for (let i = 0; i < 10; i++) assert.ok(docs.has(`sdk${i}`));
  });

  test('RU budget: ruPerSecond answers 429 until the 1 s window resets', T, async () => {
    const coll = await newContainer('budget');
    await proxy.set({ ruPerSecond: 100 });
    const five = (tag) => Array.from({ length: 5 }, (_, i) => upsert({ id: `${tag}${i}`, pk: 'p' })); // 50 RU
    let ok = false;
    for (let attempt = 0; attempt < 5 && !ok; attempt++) {
      while (Date.now() % 1000 > 50) await sleep(5); // start at the beginning of a window
      const t0 = Date.now();
      const r1 = await batch(coll, five(`a${attempt}_`));
      const r2 = await batch(coll, five(`b${attempt}_`));
      const r3 = await batch(coll, five(`c${attempt}_`));
      if (Math.floor(Date.now() / 1000) !== Math.floor(t0 / 1000)) continue; // crossed a window: retry
      assert.equal(r1.status, 200);
      assert.equal(r2.status, 200);
      assert.equal(r3.status, 429);
      assert.equal(r3.headers['x-ms-substatus'], '3200');
      const wait = Number(r3.headers['x-ms-retry-after-ms']);
      assert.ok(wait >= 1 && wait <= 1000, String(wait));
      assert.ok(!(await docsIn(coll)).has(`c${attempt}_0`));
      await sleep(wait);
      const r4 = await batch(coll, five(`c${attempt}_`));
      assert.equal(r4.status, 200);
      ok = true;
    }
    assert.ok(ok, 'could not fit three requests into one 1 s window');
    // a single request bigger than the budget still passes when alone in its window
    await proxy.set({ ruPerSecond: 10 });
    await sleep(1000 - (Date.now() % 1000) + 5);
    const big = await batch(coll, [upsert({ id: 'big', pk: 'p', pad: 'x'.repeat(3000) })]);
    assert.equal(big.status, 200);
    assert.equal(big.headers['x-ms-request-charge'], '30.00');
    const recs = await proxy.requests({ kind: 'bulk' });
    assert.ok(recs.some((r) => r.reason === 'ruPerSecond' && r.status === 429 && r.ru === 0));
  });

  test('atomic batches: an invalid id or a failing op gives 207 + 424s and applies nothing', T, async () => {
    const coll = await newContainer('atomic');
    await seed(coll, [{ id: 'keep', pk: 'p1', v: 1 }, { id: 'gone', pk: 'p1', v: 1 }]);
    const keepV = async () => (await docsIn(coll)).get('keep')?.v;

    for (const bad of ['bad/id', 'bad\\id', 'bad?id', 'bad#id', 'x'.repeat(1024), '']) {
      const r = await batch(coll, [upsert({ id: 'keep', pk: 'p1', v: 2 }), upsert({ id: 'new1', pk: 'p1' }),
        upsert({ id: bad, pk: 'p1' }), upsert({ id: 'new2', pk: 'p1' })], { atomic: true, pk: 'p1' });
      assert.equal(r.status, 207, bad);
      assert.deepEqual(statuses(r), [424, 424, 400, 424]);
      assert.deepEqual(r.json.map((x) => x.requestCharge), [0, 0, 0, 0]);
      assert.equal(r.headers['x-ms-request-charge'], '0.00');
    }
    assert.equal(await keepV(), 1);
    let docs = await docsIn(coll);
    assert.ok(!docs.has('new1') && !docs.has('new2'));
    // 1023 bytes is fine (multi-byte characters count as bytes)
    const okLong = await batch(coll, [upsert({ id: 'é'.repeat(511), pk: 'p1' })], { atomic: true, pk: 'p1' });
    assert.deepEqual(statuses(okLong), [201]);
    const tooLong = await batch(coll, [upsert({ id: 'é'.repeat(512), pk: 'p1' })], { atomic: true, pk: 'p1' });
    assert.deepEqual(statuses(tooLong), [400]);

    // a delete of a missing doc fails the batch on the real service: nothing before it stays
    const r = await batch(coll, [upsert({ id: 'keep', pk: 'p1', v: 3 }), upsert({ id: 'new3', pk: 'p1' }),
      del('missing', 'p1'), del('gone', 'p1')], { atomic: true, pk: 'p1' });
    assert.equal(r.status, 207);
    assert.deepEqual(statuses(r), [424, 424, 404, 424]);
    docs = await docsIn(coll);
    assert.equal(docs.get('keep').v, 1);
    assert.ok(!docs.has('new3') && docs.has('gone'));
    assert.equal((await proxy.requests({ kind: 'batch' })).at(-1).reason, 'precheck');

    // rollback mode: forwarded, the emulator applies the first ops, the proxy undoes them
    await proxy.set({ atomicMode: 'rollback' });
    const rb = await batch(coll, [upsert({ id: 'keep', pk: 'p1', v: 4 }), upsert({ id: 'new4', pk: 'p1' }),
      del('gone', 'p1'), del('missing', 'p1')], { atomic: true, pk: 'p1' });
    assert.deepEqual(statuses(rb), [424, 424, 424, 404]);
    docs = await docsIn(coll);
    assert.equal(docs.get('keep').v, 1);
    assert.equal(docs.get('gone').v, 1);
    assert.ok(!docs.has('new4'));
    let l = await proxy.ledger();
    assert.equal(l.rollbacks, 1);
    assert.equal(l.atomicViolations, 0);

    // the emulator alone: earlier ops stay applied, HTTP 200 (why the proxy exists)
    await proxy.set({ atomicMode: 'none' });
    const lax = await batch(coll, [upsert({ id: 'new5', pk: 'p1' }), del('missing', 'p1')], { atomic: true, pk: 'p1' });
    assert.equal(lax.status, 207); // per-op failure: still multi-status
    assert.deepEqual(statuses(lax), [201, 404]);
    assert.ok((await docsIn(coll)).has('new5'));

    // a good atomic batch, and the SDK's (ops without partitionKey get the header's)
    await proxy.set({ atomicMode: 'precheck' });
    const good = await batch(coll, [upsert({ id: 'keep', pk: 'p1', v: 6 }), del('gone', 'p1'),
      { operationType: 'Create', resourceBody: { id: 'new6', pk: 'p1' } }], { atomic: true, pk: 'p1' });
    assert.equal(good.status, 200);
    assert.deepEqual(statuses(good), [200, 204, 201]);
    assert.equal(good.headers['x-ms-request-charge'], '30.00');
    docs = await docsIn(coll);
    assert.equal(docs.get('keep').v, 6);
    assert.ok(!docs.has('gone') && docs.has('new6'));
    const dup = await batch(coll, [upsert({ id: 'x7', pk: 'p1' }), { operationType: 'Create', resourceBody: { id: 'new6', pk: 'p1' } }],
      { atomic: true, pk: 'p1' });
    assert.deepEqual(statuses(dup), [424, 409]);
    assert.ok(!(await docsIn(coll)).has('x7'));
    const client = proxy.client();
    try {
      const b = await client.database(DB).container(coll).items.batch([
        { operationType: 'Upsert', resourceBody: { id: 'sdk1', pk: 'p2' } },
        { operationType: 'Delete', id: 'nope' },
      ], 'p2');
      assert.equal(b.code, 207);
      assert.deepEqual(b.result.map((x) => x.statusCode), [424, 404]);
    } finally {
      client.dispose();
    }
    assert.ok(!(await docsIn(coll)).has('sdk1'));
    l = await proxy.ledger();
    assert.equal(l.atomicViolations, 0);
  });

  test('limits: > 100 ops -> 400, request > 2 MiB -> 413, per-op 400/413 in bulk, the rest proceeds', T, async () => {
    const coll = await newContainer('limits');
    const many = (n, tag) => Array.from({ length: n }, (_, i) => upsert({ id: `${tag}${i}`, pk: `p${i % 3}` }));
    const r101 = await batch(coll, many(101, 'm'));
    assert.equal(r101.status, 400);
    assert.equal(r101.json.code, 'BadRequest');
    assert.ok(!Array.isArray(r101.json));
    const a101 = await batch(coll, Array.from({ length: 101 }, (_, i) => upsert({ id: `am${i}`, pk: 'p' })), { atomic: true, pk: 'p' });
    assert.equal(a101.status, 400);
    assert.equal((await docsIn(coll)).size, 0);
    const r100 = await batch(coll, many(100, 'n'));
    assert.equal(r100.status, 200);
    assert.equal(r100.json.length, 100);
    assert.equal((await batch(coll, [])).status, 400);
    assert.equal((await batch(coll, { not: 'an array' })).status, 400);

    // whole request over 2 MiB
    const huge = await batch(coll, [upsert({ id: 'huge', pk: 'p', pad: 'h'.repeat(2 * 1024 * 1024) })]);
    assert.equal(huge.status, 413);
    assert.equal(huge.json.code, 'RequestEntityTooLarge');
    assert.ok(!(await docsIn(coll)).has('huge'));

    // per-op failures in bulk (smaller limits to keep it quick): the others are applied
    await proxy.set({ maxItemBytes: 8 * 1024 });
    const mixed = await batch(coll, [upsert({ id: 'ok1', pk: 'p' }), upsert({ id: 'big', pk: 'p', pad: 'b'.repeat(9000) }),
      upsert({ id: 'bad#id', pk: 'p' }), { operationType: 'Upsert', resourceBody: { id: 'nopk', pk: 'p' } }, upsert({ id: 'ok2', pk: 'q' }),
      del('bad/del', 'p')]);
    assert.equal(mixed.status, 207);
    assert.deepEqual(statuses(mixed), [201, 413, 400, 400, 201, 400]);
    assert.deepEqual(mixed.json.map((x) => x.requestCharge), [10, 0, 0, 0, 10, 0]);
    assert.equal(mixed.headers['x-ms-request-charge'], '20.00');
    let docs = await docsIn(coll);
    assert.ok(docs.has('ok1') && docs.has('ok2') && !docs.has('big') && !docs.has('nopk'));
    // without continue-on-error, ops after the first failure are 424 and not applied
    const stop = await batch(coll, [upsert({ id: 'ok3', pk: 'p' }), upsert({ id: 'bad/3', pk: 'p' }), upsert({ id: 'ok4', pk: 'p' })],
      { continueOnError: false });
    assert.deepEqual(statuses(stop), [201, 400, 424]);
    docs = await docsIn(coll);
    assert.ok(docs.has('ok3') && !docs.has('ok4'));
    // a smaller request limit
    await proxy.set({ maxRequestBytes: 64 * 1024 });
    assert.equal((await batch(coll, [upsert({ id: 'mid', pk: 'p', pad: 'm'.repeat(70 * 1024) })])).status, 413);
    await assert.rejects(proxy.set({ maxOpz: 3 }), /unknown fault proxy option 'maxOpz'/);
    const l = await proxy.ledger();
    assert.equal(l.byStatus['413'], 2);
    assert.equal(l.byStatus['400'], 4);
    assert.equal(l.ru, 100 * 10 + 20 + 10);
  });

  test('truncation: forwarded and applied, the answer is cut half-way', T, async () => {
    const coll = await newContainer('trunc');
    await proxy.set({ truncateRate: 1 });
    await assert.rejects(batch(coll, [upsert({ id: 'tr1', pk: 'p' }), upsert({ id: 'tr2', pk: 'p' })]), (e) => e.code === 'TRUNCATED' && e.status === 200);
    assert.ok((await docsIn(coll)).has('tr2'), 'a truncated answer was still applied');
    const l = await proxy.ledger();
    assert.equal(l.truncated, 1);
    assert.equal(l.failedInjected, 1);
    assert.equal(l.unacknowledged, 1);
    assert.equal(l.opsUnacknowledged, 2);
    assert.equal(l.ru, 20);
    assert.equal(l.ruUnacknowledged, 20);
    assert.equal(l.byStatus.truncated, 1);
    const [rec] = await proxy.requests({ kind: 'bulk' });
    assert.equal(rec.injected, 'truncate');
    assert.equal(rec.acknowledged, false);
    // resending is idempotent
    await proxy.clear();
    const again = await batch(coll, [upsert({ id: 'tr1', pk: 'p' }), upsert({ id: 'tr2', pk: 'p' })]);
    assert.deepEqual(statuses(again), [200, 200]);
    // scripted once: a request that fails authorization does not use it up
    await proxy.failNext(1, { fault: 'truncate' });
    const date = new Date().toUTCString();
    const unsigned = await batch(coll, [upsert({ id: 'tr3', pk: 'p' })], { date, authorization: aadAuthorization('nobody') });
    assert.equal(unsigned.status, 401);
    await assert.rejects(batch(coll, [upsert({ id: 'tr3', pk: 'p' })]), (e) => e.code === 'TRUNCATED');
    assert.equal((await batch(coll, [upsert({ id: 'tr4', pk: 'p' })])).status, 200);
    assert.equal((await proxy.ledger()).truncated, 2);
  });

  test('stall: the request is held stallMs (the client times out), then applied', T, async () => {
    const coll = await newContainer('stall');
    await proxy.set({ stallRate: 1, stallMs: 1500 });
    const t0 = Date.now();
    await assert.rejects(batch(coll, [upsert({ id: 'st1', pk: 'p' })], { timeoutMs: 300 }), (e) => e.code === 'CLIENT_TIMEOUT');
    assert.ok(Date.now() - t0 < 1000);
    assert.ok(!(await docsIn(coll)).has('st1'), 'not forwarded before the stall ends');
    await waitFor(async () => (await docsIn(coll)).has('st1'), { timeoutMs: 5000, what: 'the stalled request applied' });
    await waitFor(async () => (await proxy.ledger()).stalls === 1, { timeoutMs: 3000, what: 'the stall accounted' });
    let l = await proxy.ledger();
    assert.equal(l.unacknowledged, 1);
    assert.equal(l.opsUnacknowledged, 1);
    // a patient client gets the answer after the stall
    const t1 = Date.now();
    const r = await batch(coll, [upsert({ id: 'st2', pk: 'p' })], { timeoutMs: 5000 });
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t1 >= 1400);
    l = await proxy.ledger();
    assert.equal(l.stalls, 2);
    assert.equal(l.failedInjected, 0);
    const recs = await proxy.requests({ kind: 'bulk' });
    assert.ok(recs.every((x) => x.injected === 'stall' && x.durationMs >= 1400));
    assert.deepEqual(recs.map((x) => x.acknowledged), [false, true]);
    // scripted once, with its own duration
    await proxy.clear();
    await proxy.failNext(1, { fault: 'stall', stallMs: 400 });
    const t2 = Date.now();
    assert.equal((await batch(coll, [upsert({ id: 'st3', pk: 'p' })])).status, 200);
    assert.ok(Date.now() - t2 >= 350);
    const t3 = Date.now();
    assert.equal((await batch(coll, [upsert({ id: 'st4', pk: 'p' })])).status, 200);
    assert.ok(Date.now() - t3 < 350);
  });

  test('resets, injected errors, failNext and container statuses are not applied', T, async () => {
    const coll = await newContainer('err');
    const other = await newContainer('err_other');
    await proxy.set({ resetRate: 1 });
    await assert.rejects(batch(coll, [upsert({ id: 'r1', pk: 'p' })]), (e) => ['ECONNRESET', 'TRUNCATED'].includes(e.code) || /socket hang up/.test(e.message));
    await proxy.set({ resetRate: 0, errorRate: { 410: 1 } });
    const gone = await batch(coll, [upsert({ id: 'r2', pk: 'p' })]);
    assert.equal(gone.status, 410);
    assert.equal(gone.headers['x-ms-substatus'], '1002');
    assert.equal(gone.json.code, 'Gone');
    assert.match(gone.json.message, /^Message: \{"Errors":\[/);
    await proxy.set({ errorRate: { 503: 0.5, 408: 0.25, 449: 0.25 } });
    const seen = new Set();
    for (let i = 0; i < 12; i++) seen.add((await batch(coll, [upsert({ id: 'r3', pk: 'p' })])).status);
    assert.deepEqual([...seen].sort(), [408, 449, 503]);
    let docs = await docsIn(coll);
    assert.equal(docs.size, 0);

    await proxy.clear();
    assert.equal(await proxy.failNext(2, { status: 503 }), 2);
    await proxy.failNext(1, { status: 429, retryAfterMs: 123 });
    await proxy.failNext(1, { fault: 'reset' });
    const s = [];
    for (let i = 0; i < 4; i++) s.push(await batch(coll, [upsert({ id: `f${i}`, pk: 'p' })]).then((r) => r, (e) => e));
    assert.deepEqual(s.slice(0, 3).map((r) => r.status), [503, 503, 429]);
    assert.equal(s[2].headers['x-ms-retry-after-ms'], '123');
    assert.ok(s[3] instanceof Error);
    assert.equal((await batch(coll, [upsert({ id: 'f4', pk: 'p' })])).status, 200);
    docs = await docsIn(coll);
    assert.deepEqual([...docs.keys()], ['f4']);

    await proxy.setStatusForContainer(DB, coll, 404);
    const path = `/dbs/${DB}/colls/${coll}`;
    const nf = await raw({ path });
    assert.equal(nf.status, 404);
    assert.equal(nf.json.code, 'NotFound');
    assert.equal((await raw({ path: `${path}/pkranges` })).status, 404);
    assert.equal((await batch(coll, [upsert({ id: 'c1', pk: 'p' })])).status, 404);
    assert.equal((await batch(other, [upsert({ id: 'c1', pk: 'p' })])).status, 200);
    await proxy.setStatusForContainer(DB, coll, 403, { substatus: 5300 });
    const fb = await batch(coll, [upsert({ id: 'c1', pk: 'p' })]);
    assert.equal(fb.status, 403);
    assert.equal(fb.headers['x-ms-substatus'], '5300');
    await proxy.setStatusForContainer(DB, coll, null);
    assert.equal((await raw({ path })).status, 200);
    assert.ok(!(await docsIn(coll)).has('c1'));
    const l = await proxy.ledger();
    assert.equal(l.resets, 2);
    assert.equal(l.byStatus.reset, 2);
    assert.equal(l.throttled, 1);
    assert.equal(l.ru, 10 + 10); // f4 and the other container's c1
    // every injected failure but the 429 counts
    assert.equal(l.failedInjected, 1 + 1 + 12 + 2 + 1 + 3 + 1);
  });

  test('down() refuses connections, up() accepts them again; keep-alive is served', T, async () => {
    const coll = await newContainer('down');
    await proxy.down();
    await assert.rejects(batch(coll, [upsert({ id: 'd1', pk: 'p' })]), (e) => e.code === 'ECONNREFUSED');
    await proxy.up();
    assert.equal((await batch(coll, [upsert({ id: 'd1', pk: 'p' })])).status, 200);
    // the proxy keeps client connections alive even though the emulator closes its own
    const agent = new https.Agent({ ca, keepAlive: true, maxSockets: 1 });
    try {
      const before = (await proxy.ledger()).connections;
      for (let i = 0; i < 3; i++) {
        const date = new Date().toUTCString();
        const status = await new Promise((resolve, reject) => {
          https.get({ host: '127.0.0.1', servername: 'localhost', port: proxy.port, path: `/dbs/${DB}/colls/${coll}`, agent,
            headers: { 'x-ms-date': date, 'x-ms-version': '2020-07-15',
              authorization: masterAuthorization(EMULATOR_KEY, 'GET', 'colls', `dbs/${DB}/colls/${coll}`, date) } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
          }).on('error', reject);
        });
        assert.equal(status, 200);
      }
      assert.equal((await proxy.ledger()).connections - before, 1);
    } finally {
      agent.destroy();
    }
  });

  test('bulk: per-op 429s (opThrottleRate) inside a 207 are not applied', T, async () => {
    const coll = await newContainer('opthr');
    await proxy.set({ opThrottleRate: 0.5, retryAfterMs: 40, seed: 3 });
    const ops = Array.from({ length: 20 }, (_, i) => upsert({ id: `o${i}`, pk: `p${i % 4}` }));
    const r = await batch(coll, ops);
    assert.equal(r.status, 207);
    const thr = r.json.map((x, i) => [x, i]).filter(([x]) => x.statusCode === 429);
    assert.ok(thr.length > 2 && thr.length < 18, String(thr.length));
    for (const [x] of thr) {
      assert.equal(x.subStatusCode, 3200);
      assert.equal(x.retryAfterMilliseconds, 40);
      assert.equal(x.requestCharge, 0);
    }
    const docs = await docsIn(coll);
    r.json.forEach((x, i) => assert.equal(docs.has(`o${i}`), x.statusCode === 201, `o${i}`));
    const l = await proxy.ledger();
    assert.equal(l.opsThrottled, thr.length);
    assert.equal(l.upserts, 20 - thr.length);
    assert.equal(l.ru, (20 - thr.length) * 10);
  });

  test('pkranges ids are strings as from the real service (switchable)', T, async () => {
    const coll = await newContainer('pkr');
    const r = await raw({ path: `/dbs/${DB}/colls/${coll}/pkranges` });
    assert.equal(r.status, 200);
    assert.equal(r.json.PartitionKeyRanges[0].id, '0');
    assert.equal(r.json.PartitionKeyRanges[0].maxExclusive, 'FF');
    await proxy.set({ realPkRanges: false });
    assert.equal((await raw({ path: `/dbs/${DB}/colls/${coll}/pkranges` })).json.PartitionKeyRanges[0].id, 0);
    const l = await proxy.ledger();
    assert.equal(l.byKind.pkranges, 2);
  });
});

// ---------------------------------------------------------------------------
// Effective partition keys (reference §6.4/§6.5) and the proxy's pkranges,
// routing checks and scripted split
// ---------------------------------------------------------------------------

describe('effective partition keys (reference §6.5 vectors)', () => {
  const V2 = [
    [['redmond'], '22E342F38A486A088463DFF7838A5963'],
    [[''], '32E9366E637A71B4E710384B2F4970A0'],
    [['aa'], '05033626483AE80D00E44FBD35362B19'],
    [['partitionKey'], '013AEFCF77FA271571CF665A58C933F1'],
    [['customer42'], '19819C94CE42A1654CCC8110539D9589'],
    [['a'.repeat(110)], '0BA3E9CA8EE4C14538828D1612A4B652'],
    [['a'.repeat(145)], '36375D21568760E891C9CB7002D5E059'],
    [['a'.repeat(1024)], '332BDF5512AE49615F32C7D98C2DB86C'],
    [[null], '378867E4430E67857ACE5C908374FE16'],
    [[{}], '11622DAA78F835834610ABE56EFF5CB5'],
    [[true], '0E711127C5B5A8E4726AC6DD306A3E59'],
    [[false], '2FE1BE91E90A3439635E0E9E37361EF2'],
    [[5], '19C08621B135968252FB34B4CF66F811'],
    [[5.0], '19C08621B135968252FB34B4CF66F811'],
    [[5.5], '0E2EE47829D1AF775EEFB6540FD1D0ED'],
    // eslint-disable-next-line no-loss-of-precision
    [[5.12312419050912359123], '0EF2E2D82460884AF0F6440BE4F726A8'],
    [[12313.1221], '27E7ECA8F2EE3E53424DE8D5220631C6'],
    [[123456789], '1F56D2538088EBA82CCF988F36E16760'],
    [[-128], '01DAEDABF913540367FE219B2AD06148'],
    [[2147483647], '2D9349D64712AEB5EB1406E2F0BE2725'],
    [[1.7976931348623157e308], '31424D996457102634591FF245DBCC4D'],
    [[5.0, 'redmond', true, null], '3032DECBE2AB1768D8E0AEDEA35881DF'],
    // the reference's extra computed values
    [['pk1'], '1EC0C2CBE45DBC919CF2B65D399C2673'],
    [[0], '155B95BEDAC4B1E9EC1CDC9BB0DDDE58'],
    [[1], '20CD98B339BA78A5D0CF6953B87070B0'],
  ];
  const MULTI = [
    [['seattle'], '07E4D14180A45153F00B44907886F856'],
    [['seattle', 'redmond'], '07E4D14180A45153F00B44907886F85622E342F38A486A088463DFF7838A5963'],
    // eslint-disable-next-line no-loss-of-precision
    [['seattle', 'redmond', 5.12312419050912359123],
      '07E4D14180A45153F00B44907886F85622E342F38A486A088463DFF7838A59630EF2E2D82460884AF0F6440BE4F726A8'],
    [['title_player_account!9E711EFBD3BBB492', 'Title-B60C1'], '2306FDF78C35ED4FD1C5835B075FC0B0248E1F58635558D12708326234F93A21'],
    [[false, null], '2FE1BE91E90A3439635E0E9E37361EF2378867E4430E67857ACE5C908374FE16'],
    [['tenant1', 'user1'], '0DAE0B8467B011E957BC0B8B0DEB5ACA236A5BE3329A7AD57D4B998E8602BD7B'],
  ];
  const V1 = [
    [['redmond'], '05C1EFE313830C087366656E706F6500'],
    [['partitionKey'], '05C1E1B3D9CD2608716273756A756A706F4C667A00'],
    [[''], '05C1CF33970FF80800'],
    [[null], '05C1ED45D7475601'],
    [[{}], '05C1D529E345DC00'],
    [[true], '05C1D7C5A903D803'],
    [[false], '05C1DB857D857C02'],
    [[5], '05C1D9C1C5517C05C014'],
    [[2147483647], '05C1E1F503DFB205C1DFFFFFFFFC'],
    [[2, true, false, null, undefined, 'Привет!'], '05C1D19581B37C05C0000302010008D1A0D281D1B9D1B3D1B6D2832200'],
  ];

  test('MurmurHash3 self-checks', () => {
    const { h1, h2 } = murmur3x64_128(Buffer.from('hello'));
    assert.equal(h1.toString(16), 'cbd8a7b341bd9b02');
    assert.equal(h2.toString(16), '5b1e906a48ae1d19');
    assert.deepEqual(murmur3x64_128(Buffer.alloc(0)), { h1: 0n, h2: 0n });
    assert.equal(murmur3x86_32(Buffer.from('hello')).toString(16), '248bfa47');
    // the worked example's hash input and halves
    const r = murmur3x64_128(Buffer.from('087265646D6F6E64FF', 'hex'));
    assert.equal(r.h1.toString(16).toUpperCase(), '8463DFF7838A5963');
    assert.equal(r.h2.toString(16).toUpperCase(), 'A2E342F38A486A08');
  });

  test('hash v2: every vector', () => {
    for (const [pk, want] of V2) {
      assert.equal(epkV2(pk), want, JSON.stringify(pk).slice(0, 60));
      assert.equal(epk({ kind: 'Hash', version: 2 }, JSON.stringify(pk)), want);
    }
    assert.equal(epkV2([]), '');
  });

  test('MultiHash: every vector; a prefix of the levels is a prefix of the EPK', () => {
    for (const [pk, want] of MULTI) {
      assert.equal(epkMultiHash(pk), want, JSON.stringify(pk));
      assert.equal(epk({ kind: 'MultiHash', version: 2 }, JSON.stringify(pk)), want);
    }
    assert.equal(epkMultiHash([]), '');
    assert.ok(epkMultiHash(['t', 7, 'u']).startsWith(epkMultiHash(['t', 7])));
  });

  test('hash v1 (legacy): every vector', () => {
    for (const [pk, want] of V1) {
      assert.equal(epkV1(pk), want, JSON.stringify(pk));
      if (!pk.includes(undefined)) assert.equal(epk({ kind: 'Hash' }, JSON.stringify(pk)), want);
    }
  });

  test('partition key equality and ranges', () => {
    assert.ok(samePartitionKey('["a",5]', ['a', 5.0]));
    assert.ok(samePartitionKey('[{}]', [{}]));
    assert.ok(!samePartitionKey('["a",5]', '["a","5"]'));
    assert.ok(!samePartitionKey('["a"]', '["a",null]'));
    assert.ok(!samePartitionKey('[null]', '[{}]'));
    const four = evenPkRanges(4);
    assert.deepEqual(four.map((r) => [r.id, r.minInclusive, r.maxExclusive]), [
      ['0', '', '10000000000000000000000000000000'],
      ['1', '10000000000000000000000000000000', '20000000000000000000000000000000'],
      ['2', '20000000000000000000000000000000', '30000000000000000000000000000000'],
      ['3', '30000000000000000000000000000000', 'FF'],
    ]);
    assert.deepEqual(evenPkRanges(4, { space: 1n << 128n }).map((r) => r.minInclusive),
      ['', '40000000000000000000000000000000', '80000000000000000000000000000000', 'C0000000000000000000000000000000']);
    const eight = splitPkRanges(four);
    assert.deepEqual(eight.map((r) => r.id), ['4', '5', '6', '7', '8', '9', '10', '11']);
    assert.deepEqual(eight[3], { id: '7', minInclusive: '18000000000000000000000000000000', maxExclusive: '20000000000000000000000000000000', parents: ['1'] });
    assert.equal(eight[7].maxExclusive, 'FF');
    // every v2 key is below 2^126, so it lands in one of the ranges; a full MultiHash key too
    for (const [pk, want] of [...V2, ...MULTI]) {
      assert.ok(want < '40', want);
      const r = findPkRange(four, want);
      assert.equal(r.id, String(Math.floor(parseInt(want[0], 16))), `${JSON.stringify(pk).slice(0, 40)} ${want}`);
    }
    assert.equal(findPkRange(four, '').id, '0');
    assert.equal(findPkRange(four, '10000000000000000000000000000000').id, '1');
    assert.equal(findPkRange(four, '0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF').id, '0');
  });
});

describe('fault proxy: pkRanges, validateRouting, splitRangesAfter', { timeout: 120000 }, () => {
  const cleanup = new Cleanup();
  let emu;
  let proxy;
  let ca;

  before(async () => {
    emu = await startEmulator();
    cleanup.add(() => emu.stop());
    proxy = await startFaultProxy({ emulator: emu, pkRanges: 4, validateRouting: true });
    cleanup.add(() => proxy.stop());
    ca = readFileSync(proxy.caFile);
    await createContainer(proxy.endpoint, proxy.caFile, DB, 'r_hash', '/pk');
    await createContainer(proxy.endpoint, proxy.caFile, DB, 'r_multi', ['/t', '/u', '/s'], 'MultiHash');
  });
  after(() => cleanup.run());

  function raw({ method = 'GET', path, headers = {}, body }) {
    const date = new Date().toUTCString();
    const { resourceType, resourceLink } = resourceFromPath(path);
    const h = { 'x-ms-date': date, 'x-ms-version': '2020-07-15', authorization: masterAuthorization(EMULATOR_KEY, method, resourceType, resourceLink, date), ...headers };
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) { h['content-type'] = 'application/json'; h['content-length'] = String(payload.length); }
    return new Promise((resolve, reject) => {
      const r = https.request({ host: '127.0.0.1', servername: 'localhost', port: proxy.port, method, path, headers: h, ca, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = JSON.parse(text); } catch { json = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, json });
        });
      });
      r.on('error', reject);
      r.end(payload);
    });
  }
  const pkranges = async (coll) => (await raw({ path: `/dbs/${DB}/colls/${coll}/pkranges` })).json.PartitionKeyRanges;
  const bulk = (coll, range, ops) => raw({ method: 'POST', path: `/dbs/${DB}/colls/${coll}/docs`, body: ops, headers: {
    'x-ms-cosmos-is-batch-request': 'True', 'x-ms-cosmos-batch-atomic': 'False', 'x-ms-cosmos-batch-continue-on-error': 'True',
    'x-ms-documentdb-partitionkeyrangeid': range } });
  const atomicBatch = (coll, pk, ops) => raw({ method: 'POST', path: `/dbs/${DB}/colls/${coll}/docs`, body: ops, headers: {
    'x-ms-cosmos-is-batch-request': 'True', 'x-ms-cosmos-batch-atomic': 'True', 'x-ms-documentdb-partitionkey': pk } });
  const up = (id, pk, extra = {}) => ({ operationType: 'Upsert', partitionKey: JSON.stringify(pk), resourceBody: { id, ...extra } });

  test('pkranges: N even ranges; ops routed by EPK pass, misrouted ones get 410/1002', T, async () => {
    await proxy.reset();
    const ranges = await pkranges('r_hash');
    assert.deepEqual(ranges.map((r) => [r.id, r.minInclusive, r.maxExclusive, r.status]), [
      ['0', '', '10000000000000000000000000000000', 'online'],
      ['1', '10000000000000000000000000000000', '20000000000000000000000000000000', 'online'],
      ['2', '20000000000000000000000000000000', '30000000000000000000000000000000', 'online'],
      ['3', '30000000000000000000000000000000', 'FF', 'online'],
    ]);
    // customer42 -> 19… (range 1), redmond -> 22… (range 2)
    assert.equal((await bulk('r_hash', '1', [up('a', ['customer42'], { pk: 'customer42' })])).status, 200);
    const wrong = await bulk('r_hash', '1', [up('b', ['customer42'], { pk: 'customer42' }), up('c', ['redmond'], { pk: 'redmond' })]);
    assert.equal(wrong.status, 410);
    assert.equal(wrong.headers['x-ms-substatus'], '1002');
    assert.equal(wrong.json.code, 'Gone');
    assert.equal((await bulk('r_hash', '9', [up('d', ['redmond'], { pk: 'redmond' })])).status, 410);
    const l = await proxy.ledger();
    assert.equal(l.misrouted, 2);
    assert.equal(l.rangeGone, 1);
    assert.equal(l.misroutedStale, 0);
    assert.equal(l.upserts, 1, 'nothing of a misrouted request is applied');
    const rec = (await proxy.requests({ kind: 'bulk' })).find((r) => r.routingFailure === 'misrouted');
    assert.deepEqual(rec.routing, { range: '1', gen: 0, stale: false, opIndex: 1, id: 'c', partitionKey: '["redmond"]',
      epk: '22E342F38A486A088463DFF7838A5963', expected: '2' });
  });

  test('MultiHash: full keys checked against 32-digit boundaries; atomic batches need the header key', T, async () => {
    await proxy.reset();
    const k1 = ['seattle', 'redmond', 5.12312419050912359123]; // 07E4… -> range 0
    const k2 = ['title_player_account!9E711EFBD3BBB492', 'Title-B60C1', 'x']; // 2306… -> range 2
    assert.equal((await bulk('r_multi', '0', [up('m1', k1, { t: k1[0] })])).status, 200);
    assert.equal((await bulk('r_multi', '2', [up('m2', k2, { t: k2[0] })])).status, 200);
    assert.equal((await bulk('r_multi', '0', [up('m3', k2, { t: k2[0] })])).status, 410);
    assert.equal((await atomicBatch('r_multi', JSON.stringify(k1), [up('m4', k1, { t: k1[0] }), up('m5', k1, { t: k1[0] })])).status, 200);
    const mism = await atomicBatch('r_multi', JSON.stringify(k1), [up('m6', k1, { t: k1[0] }), up('m7', ['seattle', 'redmond', 5], { t: 'seattle' })]);
    assert.equal(mism.status, 400);
    assert.equal(mism.headers['x-ms-substatus'], '1001');
    const l = await proxy.ledger();
    assert.equal(l.misrouted, 1);
    assert.equal(l.pkMismatch, 1);
    assert.equal(l.upserts, 4);
  });

  test('splitRangesAfter: old ids answer 410/1002 until the ranges are re-read', T, async () => {
    await proxy.set({ splitRangesAfter: 2 });
    await proxy.reset();
    assert.equal((await pkranges('r_hash')).length, 4);
    assert.equal((await bulk('r_hash', '1', [up('s1', ['customer42'], { pk: 'customer42' })])).status, 200);
    assert.equal((await bulk('r_hash', '2', [up('s2', ['redmond'], { pk: 'redmond' })])).status, 200); // the 2nd: split after it
    const gone = await bulk('r_hash', '1', [up('s3', ['customer42'], { pk: 'customer42' })]);
    assert.equal(gone.status, 410);
    assert.equal(gone.headers['x-ms-substatus'], '1002');
    const after = await pkranges('r_hash');
    assert.deepEqual(after.map((r) => [r.id, r.parents]), [['4', ['0']], ['5', ['0']], ['6', ['1']], ['7', ['1']],
      ['8', ['2']], ['9', ['2']], ['10', ['3']], ['11', ['3']]]);
    // customer42 = 19… -> [18…, 20…) = range 7
    assert.equal((await bulk('r_hash', '7', [up('s3', ['customer42'], { pk: 'customer42' })])).status, 200);
    assert.equal((await bulk('r_hash', '1', [up('s4', ['customer42'], { pk: 'customer42' })])).status, 410);
    assert.equal((await bulk('r_hash', '6', [up('s4', ['customer42'], { pk: 'customer42' })])).status, 410);
    const l = await proxy.ledger();
    assert.equal(l.splits, 1);
    assert.equal(l.misrouted, 3);
    assert.equal(l.rangeGone, 2);
    assert.equal(l.misroutedStale, 1, 'only the request before the re-read was excusable');
    await proxy.set({ splitRangesAfter: 0 });
    assert.equal((await pkranges('r_hash')).length, 4, 'setting the option rebuilds the ranges');
  });
});

describe('fault proxy: offers, RU windows that follow them, the RU consumer', { timeout: 120000 }, () => {
  const cleanup = new Cleanup();
  let emu;
  let proxy;
  let ca;
  const rids = {}; // 'db' | 'db/coll' -> {_rid, _self} as read through the proxy

  before(async () => {
    emu = await startEmulator();
    cleanup.add(() => emu.stop());
    proxy = await startFaultProxy({ emulator: emu });
    cleanup.add(() => proxy.stop());
    ca = readFileSync(proxy.caFile);
    for (const name of ['prov/manual', 'prov/auto', 'prov/plain', 'prov/consumer', 'pooled/c1', 'pooled/c2', 'pooled/own']) {
      const [db, coll] = name.split('/');
      await createContainer(proxy.endpoint, proxy.caFile, db, coll, '/pk');
    }
  });
  after(() => cleanup.run());
  beforeEach(async () => {
    await proxy.clear();
    await proxy.reset();
  });

  /** A raw request to the proxy signed with `key` (or the given authorization): {status, headers, json}. */
  function raw({ method = 'GET', path, headers = {}, body, key = EMULATOR_KEY, link, authorization }) {
    const date = new Date().toUTCString();
    const { resourceType, resourceLink } = resourceFromPath(path);
    const h = { 'x-ms-date': date, 'x-ms-version': '2020-07-15', 'user-agent': 'offers-test',
      authorization: authorization ?? masterAuthorization(key, method, resourceType, link ?? resourceLink, date), ...headers };
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) { h['content-type'] ??= 'application/json'; h['content-length'] = String(payload.length); }
    return new Promise((resolve, reject) => {
      const r = https.request({ host: '127.0.0.1', servername: 'localhost', port: proxy.port, method, path, headers: h, ca, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          let json;
          try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { json = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, json });
        });
      });
      r.on('error', reject);
      r.end(payload);
    });
  }
  /** The offer query the sink sends: offers whose offerResourceId is one of the rids. */
  const queryOffers = (...values) => raw({ method: 'POST', path: '/offers',
    headers: { 'x-ms-documentdb-isquery': 'True', 'content-type': 'application/query+json' },
    body: { query: `SELECT * FROM root r WHERE ${values.map((_, i) => `r.offerResourceId = @r${i}`).join(' OR ')}`,
      parameters: values.map((value, i) => ({ name: `@r${i}`, value })) } });
  /** The _rid/_self of a database ('db') or container ('db/coll') read through the proxy. */
  async function resource(name) {
    const [db, coll] = name.split('/');
    const r = await raw({ path: coll ? `/dbs/${db}/colls/${coll}` : `/dbs/${db}` });
    assert.equal(r.status, 200, name);
    rids[name] = { _rid: r.json._rid, _self: r.json._self };
    return rids[name];
  }
  const upserts = (tag, n) => Array.from({ length: n }, (_, i) => ({ operationType: 'Upsert', partitionKey: '["p"]', resourceBody: { id: `${tag}${i}`, pk: 'p' } }));
  const bulk = (name, ops) => {
    const [db, coll] = name.split('/');
    return raw({ method: 'POST', path: `/dbs/${db}/colls/${coll}/docs`, body: ops, headers: {
      'x-ms-cosmos-is-batch-request': 'True', 'x-ms-cosmos-batch-atomic': 'False', 'x-ms-cosmos-batch-continue-on-error': 'True',
      'x-ms-documentdb-partitionkeyrangeid': '0' } });
  };
  const MANUAL_AUTO_SHARED = { 'prov/manual': { throughput: 400 }, 'prov/auto': { autoscaleMax: 4000 }, pooled: { throughput: 800 } };

  test('rids: container _self is dbs/<dbRid>/colls/<collRid>/ with the database _rid; 4- and 8-byte rids', T, async () => {
    const db = await resource('prov');
    const coll = await resource('prov/manual');
    assert.equal(db._self, `dbs/${db._rid}/`);
    assert.equal(coll._self, `dbs/${db._rid}/colls/${coll._rid}/`);
    const dbBytes = Buffer.from(db._rid, 'base64');
    const collBytes = Buffer.from(coll._rid, 'base64');
    assert.equal(dbBytes.length, 4);
    assert.equal(collBytes.length, 8);
    assert.ok(collBytes.subarray(0, 4).equals(dbBytes), 'a collection rid starts with its database rid');
    assert.notEqual((await resource('pooled'))._rid, db._rid);
  });

  test('offer queries: manual, autoscale, shared database and none', T, async () => {
    await proxy.set({ offers: MANUAL_AUTO_SHARED });
    const manual = await resource('prov/manual');
    const auto = await resource('prov/auto');
    const plain = await resource('prov/plain');
    const prov = await resource('prov');
    const c1 = await resource('pooled/c1');
    const pooled = await resource('pooled');

    const m = await queryOffers(manual._rid);
    assert.equal(m.status, 200);
    assert.equal(m.headers['x-ms-request-charge'], '2.50');
    assert.equal(m.headers['x-ms-item-count'], '1');
    assert.equal(m.json._rid, '');
    assert.equal(m.json._count, 1);
    const o = m.json.Offers[0];
    assert.match(o.id, /^[A-Za-z0-9]{4}$/);
    assert.equal(typeof o._etag, 'string');
    assert.ok(Number.isInteger(o._ts) && Math.abs(o._ts - Date.now() / 1000) < 60);
    assert.deepEqual({ ...o, _etag: undefined, _ts: undefined }, {
      resource: manual._self, offerType: 'Invalid', offerResourceId: manual._rid, offerVersion: 'V2',
      content: { offerThroughput: 400, offerIsRUPerMinuteThroughputEnabled: false },
      id: o.id, _rid: o.id, _self: `offers/${o.id}/`, _etag: undefined, _ts: undefined });

    const a = (await queryOffers(auto._rid)).json.Offers;
    assert.equal(a.length, 1);
    assert.deepEqual(a[0].content, { offerThroughput: 400, offerIsRUPerMinuteThroughputEnabled: false,
      offerAutopilotSettings: { maxThroughput: 4000, tier: 0, maximumTierThroughput: 0, autoUpgrade: false } });
    assert.equal(a[0].resource, auto._self);

    // shared: the container has no offer of its own, its database has
    assert.equal((await queryOffers(c1._rid)).json._count, 0);
    const dbRid = c1._self.split('/')[1];
    assert.equal(dbRid, pooled._rid);
    const s = (await queryOffers(c1._rid, dbRid)).json.Offers;
    assert.equal(s.length, 1);
    assert.equal(s[0].offerResourceId, pooled._rid);
    assert.equal(s[0].resource, `dbs/${pooled._rid}/`);
    assert.equal(s[0].content.offerThroughput, 800);
    assert.notEqual(s[0].id, o.id);

    // none: neither the container nor its database
    const n = await queryOffers(plain._rid, prov._rid);
    assert.equal(n.status, 200);
    assert.deepEqual(n.json, { _rid: '', Offers: [], _count: 0 });
    assert.equal(n.headers['x-ms-item-count'], '0');

    // a point read by offer rid; an unknown one is 404
    const point = await raw({ path: `/offers/${o.id}` });
    assert.equal(point.status, 200);
    assert.deepEqual(point.json, o);
    assert.equal((await raw({ path: '/offers/zzzz' })).status, 404);

    const recs = await proxy.requests({ kind: 'offers' });
    assert.equal(recs.length, 7);
    assert.ok(recs.every((r) => r.agent === 'offers-test' && Math.abs(r.at - Date.now()) < 30000), JSON.stringify(recs[0]));
    assert.deepEqual(recs.map((r) => r.status), [200, 200, 200, 200, 200, 200, 404]);
  });

  test('GET /offers: the feed lists every offer of an existing resource; the SDK reads them too', T, async () => {
    await proxy.set({ offers: { ...MANUAL_AUTO_SHARED, 'ghost/x': { throughput: 100 }, 'prov/nothing': { throughput: 100 } } });
    const feed = await raw({ path: '/offers' });
    assert.equal(feed.status, 200);
    assert.equal(feed.json._count, 3);
    assert.equal(feed.headers['x-ms-item-count'], '3');
    const want = [(await resource('prov/manual'))._rid, (await resource('prov/auto'))._rid, (await resource('pooled'))._rid];
    assert.deepEqual(feed.json.Offers.map((x) => x.offerResourceId).sort(), want.sort());
    assert.equal(new Set(feed.json.Offers.map((x) => x.id)).size, 3);
    const client = proxy.client();
    try {
      const { resources } = await client.offers.readAll().fetchAll();
      assert.deepEqual(resources.map((x) => x.id).sort(), feed.json.Offers.map((x) => x.id).sort());
      const { resource: one } = await client.offer(resources[0].id).read();
      assert.deepEqual(one, resources[0]);
    } finally {
      client.dispose();
    }
    assert.equal((await proxy.ledger()).unauthorized, 0, 'the SDK signs offers as the proxy checks them');
  });

  test('offersMode serverless: every offer read answers 400; switchable back', T, async () => {
    await proxy.set({ offers: MANUAL_AUTO_SHARED });
    const { _rid } = await resource('prov/manual');
    const { id } = (await queryOffers(_rid)).json.Offers[0];
    await proxy.set({ offersMode: 'serverless' });
    for (const r of [await queryOffers(_rid), await raw({ path: '/offers' }), await raw({ path: `/offers/${id}` })]) {
      assert.equal(r.status, 400);
      assert.equal(r.json.code, 'BadRequest');
      assert.match(r.json.message, /^Reading or replacing offers is not supported for serverless accounts\.\r\nActivityId: [0-9a-f-]{36}, Microsoft\.Azure\.Documents\.Common\/2\.14\.0$/);
      assert.equal(r.headers['x-ms-substatus'], undefined);
    }
    await proxy.set({ offersMode: 'normal' });
    assert.equal((await queryOffers(_rid)).status, 200);
    await assert.rejects(proxy.set({ offersMode: 'provisioned' }), /offersMode: 'provisioned'/);
    await assert.rejects(proxy.set({ offers: { 'a/b': { throughput: -1 } } }), /positive integer/);
  });

  test('offersMode forbidden: 403 with substatus 5301 and the RBAC message, for keys and Entra ID tokens', T, async () => {
    await proxy.set({ offers: MANUAL_AUTO_SHARED, offersMode: 'forbidden' });
    await proxy.setAadToken('entra-token');
    const { _rid } = await resource('prov/manual');
    for (const r of [await queryOffers(_rid), await raw({ path: '/offers', authorization: aadAuthorization('entra-token') })]) {
      assert.equal(r.status, 403);
      assert.equal(r.headers['x-ms-substatus'], '5301');
      assert.equal(r.json.code, 'Forbidden');
      assert.match(r.json.message, /^Request blocked by Auth \S+ : Request is blocked because principal \[[0-9a-f-]{36}\] does not have required RBAC permissions to perform action \[Microsoft\.DocumentDB\/databaseAccounts\/readMetadata\] on resource \[\/\]\. .*\r\nActivityId: /s);
    }
    await proxy.setAadToken(null);
    const recs = await proxy.requests({ kind: 'offers' });
    assert.deepEqual(recs.map((r) => r.status), [403, 403]);
  });

  test('offer reads check signatures: wrong key, wrong link or none is 401', T, async () => {
    await proxy.set({ offers: MANUAL_AUTO_SHARED });
    const { _rid } = await resource('prov/manual');
    const id = (await queryOffers(_rid)).json.Offers[0].id;
    assert.equal((await raw({ path: `/offers/${id}` })).status, 200);
    const wrongKey = Buffer.alloc(64, 7).toString('base64');
    const bad = [
      await raw({ path: `/offers/${id}`, key: wrongKey }),
      await raw({ path: `/offers/${id}`, link: `offers/${id.toLowerCase()}` }),
      await raw({ path: '/offers', link: 'offers' }),
      await raw({ method: 'POST', path: '/offers', key: wrongKey, headers: { 'x-ms-documentdb-isquery': 'True', 'content-type': 'application/query+json' }, body: { query: 'SELECT * FROM r', parameters: [] } }),
      await raw({ path: '/offers', authorization: aadAuthorization('not-configured') }),
    ];
    assert.deepEqual(bad.map((r) => r.status), [401, 401, 401, 401, 401]);
    assert.ok(bad.every((r) => r.json.code === 'Unauthorized'));
    assert.equal((await proxy.ledger()).unauthorized, 5);
  });

  test('RU windows follow the offers: one window per shared database, one per dedicated offer, else ruPerSecond', T, async () => {
    await proxy.set({ offers: { pooled: { throughput: 100 }, 'pooled/own': { throughput: 100 }, 'prov/auto': { autoscaleMax: 100 } } });
    let ok = false;
    for (let attempt = 0; attempt < 5 && !ok; attempt++) {
      while (Date.now() % 1000 > 50) await sleep(5); // start at the beginning of a window
      const t0 = Date.now();
      const t = `w${attempt}_`;
      const got = [];
      for (const name of ['pooled/c1', 'pooled/c2', 'pooled/c1', 'pooled/own', 'pooled/own', 'pooled/own', 'prov/auto', 'prov/auto', 'prov/auto', 'prov/plain', 'prov/plain', 'prov/plain']) {
        got.push((await bulk(name, upserts(`${t}${got.length}_`, 5))).status); // 50 RU each
      }
      if (Math.floor(Date.now() / 1000) !== Math.floor(t0 / 1000)) continue; // crossed a window: retry
      // c1 and c2 share 100 RU; 'own' and 'auto' (autoscale max) have 100 each; 'plain' has no limit
      assert.deepEqual(got, [200, 200, 429, 200, 200, 429, 200, 200, 429, 200, 200, 200]);
      ok = true;
    }
    assert.ok(ok, 'could not fit the requests into one 1 s window');
    const recs = (await proxy.requests({ kind: 'bulk' })).slice(-12);
    assert.deepEqual(recs.map((r) => r.window ?? null), ['pooled', 'pooled', 'pooled', 'pooled/own', 'pooled/own', 'pooled/own',
      'prov/auto', 'prov/auto', 'prov/auto', null, null, null]);
    const throttled = recs.filter((r) => r.status === 429);
    assert.ok(throttled.every((r) => r.reason === 'offer' && r.ru === 0));

    // without offers, ruPerSecond applies per container again
    await proxy.set({ offers: {}, ruPerSecond: 50 });
    await sleep(1000 - (Date.now() % 1000) + 5);
    const fallback = [await bulk('pooled/c1', upserts('f', 5)), await bulk('pooled/c1', upserts('g', 5))];
    assert.deepEqual(fallback.map((r) => r.status), [200, 429]);
    assert.equal((await proxy.requests({ kind: 'bulk' })).at(-1).reason, 'ruPerSecond');
  });

  test('the RU consumer spends its rate within 10% over 3 s, with no 429 when alone; over its offer it is throttled', T, async () => {
    await proxy.set({ offers: { 'prov/consumer': { throughput: 1000 } } });
    const run = async (ruPerSecond) => {
      await proxy.reset();
      const consumer = startRuConsumer({ endpoint: proxy.endpoint, key: EMULATOR_KEY, ca: proxy.caFile, db: 'prov', coll: 'consumer', pkPath: 'pk', ruPerSecond });
      await sleep(3000);
      const stats = await consumer.stop();
      return { stats, recs: await proxy.requests({ kind: 'batch' }) };
    };
    const { stats, recs } = await run(400);
    assert.equal(stats.throttled, 0);
    assert.equal(stats.errors, 0, stats.lastError);
    assert.ok(stats.ru >= 1080 && stats.ru <= 1320, `spent ${stats.ru} RU in 3 s at 400 RU/s`);
    assert.equal(stats.ops * 10, stats.ru);
    assert.equal(recs.length, stats.requests);
    assert.ok(recs.every((r) => r.agent === 'ru-consumer' && r.status === 200 && r.window === 'prov/consumer' && r.partitionKey === '["consumer"]'));
    assert.equal(recs.reduce((a, r) => a + r.ru, 0), stats.ru);
    const gaps = recs.slice(1).map((r, i) => r.at - recs[i].at);
    assert.ok(Math.max(...gaps) < 150, `evenly paced: gaps ${gaps.join(',')}`);

    const over = await run(1500);
    assert.ok(over.stats.throttled > 0, 'a consumer above its container offer gets 429s');
    assert.ok(over.stats.ru <= 1000 * 4, `spent ${over.stats.ru} RU in 3 s under a 1000 RU/s offer`);
    assert.ok(over.recs.some((r) => r.status === 429 && r.reason === 'offer' && r.agent === 'ru-consumer'));
  });
});
