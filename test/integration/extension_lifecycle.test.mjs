// DROP EXTENSION and CREATE EXTENSION while the worker runs (issue 13 item 8):
// the worker knows routes by id, so a new routes table must not hand out an id
// the worker still knows for an old route, or the new route's changes go to
// the old route's container.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from '../lib/sink.mjs';

let sink;
before(async () => { sink = await startSink(); });
after(async () => { await sink?.stop(); });

test('a route made after DROP and CREATE EXTENSION gets a new id and its own container', async () => {
  await sink.pg.query('CREATE TABLE ext_a (id int PRIMARY KEY, k text NOT NULL)');
  await sink.route('ext_a', 'ext_a', 'k');
  await sink.pg.query(`INSERT INTO ext_a SELECT g, 'k' || g % 3 FROM generate_series(1, 10) g`);
  await sink.waitCaughtUp();
  const [{ route_id: oldId }] = await sink.pg.query('SELECT route_id FROM cosmos_sink.routes');

  await sink.pg.query('DROP EXTENSION cosmos_sink');
  await sink.pg.query('CREATE EXTENSION cosmos_sink');
  await sink.pg.query('CREATE TABLE ext_b (id int PRIMARY KEY, k text NOT NULL)');
  await sink.route('ext_b', 'ext_b', 'k');
  const [{ route_id: newId }] = await sink.pg.query('SELECT route_id FROM cosmos_sink.routes');
  assert.ok(newId > oldId, `route id ${newId} is above the old route's ${oldId}`);
  await sink.pg.query(`INSERT INTO ext_b SELECT g, 'k' || g % 3 FROM generate_series(101, 110) g`);
  await sink.waitCaughtUp();
  const b = await sink.verify('ext_b', 'id', 'ext_b');
  assert.ok(b.ok, String(b));
  const a = await sink.verify('ext_a', 'id', 'ext_a');
  assert.ok(a.ok, `the old container got nothing of the new route: ${a}`);
});
