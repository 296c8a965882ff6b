// The "DIY peer" of the benchmark: what a team would build instead of
// cosmos_sink in an afternoon. wal2json (format-version 2) through
// pg_recvlogical on stdin, one line per change, turned into Upsert/Delete
// operations (id = the id column as text, partition key from the row) and
// written with the official @azure/cosmos SDK's bulk API, up to --concurrency
// calls in flight, each call taking the changes read so far (up to --chunk).
// It cannot confirm the slot (no feedback path from here to pg_recvlogical):
// it only counts acknowledged operations and exits once --expect of them
// (all changes of the workload) were acknowledged, printing one JSON line:
//   {"acked":N,"failed":F,"calls":C,"seconds":S,"firstChangeAtMs":..,"lastLsn":".."}
//
// node diy-peer.mjs --endpoint https://127.0.0.1:PORT/ --ca CA.pem --key KEY
//   --route public.orders_hi=bench/orders_hi/customer_id/order_id [--route ...]
//   --expect N [--concurrency 16] [--chunk 1000] [--api executeBulkOperations|bulk]
import '../lib/node18.mjs'; // before @azure/cosmos: global crypto on Node 18
import { readFileSync } from 'node:fs';
import https from 'node:https';
import readline from 'node:readline';
import { CosmosClient } from '@azure/cosmos';

const args = { concurrency: '16', chunk: '1000', api: 'executeBulkOperations', route: [] };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (k === 'route') args.route.push(process.argv[i + 1]); else args[k] = process.argv[i + 1];
}
const expect = Number(args.expect || 0);
const concurrency = Number(args.concurrency);
const chunkMax = args.api === 'bulk' ? Math.min(100, Number(args.chunk)) : Number(args.chunk);
const started = Date.now();

const client = new CosmosClient({
  endpoint: args.endpoint,
  key: args.key,
  agent: new https.Agent({ ca: args.ca ? readFileSync(args.ca) : undefined, keepAlive: true, maxSockets: 64 }),
  connectionPolicy: { enableEndpointDiscovery: false, enableBackgroundEndpointRefreshing: false, requestTimeout: 60000 },
});

// table -> {container, pk column, id column}
const routes = new Map();
for (const r of args.route) {
  const [table, target] = r.split('=');
  const [db, coll, pk, id] = target.split('/');
  routes.set(table, { container: client.database(db).container(coll), pk, id, queue: [] });
}

let acked = 0;
let failed = 0;
let calls = 0;
let inFlight = 0;
let firstChangeAt = null;
let lastLsn = null;
let inputDone = false;
let finished = false;

const valueOf = (cols, name) => {
  for (const c of cols) if (c.name === name) return c.value;
  return undefined;
};

function toOp(change, route) {
  if (change.action === 'D') {
    const id = valueOf(change.identity, route.id);
    return { operationType: 'Delete', id: String(id), partitionKey: valueOf(change.identity, route.pk) };
  }
  const doc = {};
  for (const c of change.columns) doc[c.name] = c.value;
  doc.id = String(doc[route.id]);
  return { operationType: 'Upsert', partitionKey: doc[route.pk], resourceBody: doc };
}

function finish() {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify({ acked, failed, calls, seconds: (Date.now() - started) / 1000,
    firstChangeAtMs: firstChangeAt === null ? null : firstChangeAt - started, lastLsn })}\n`);
  client.dispose();
  process.exit(0);
}

async function call(route, ops) {
  inFlight++;
  calls++;
  try {
    const results = args.api === 'bulk'
      ? await route.container.items.bulk(ops, { continueOnError: true })
      : await route.container.items.executeBulkOperations(ops);
    results.forEach((r, i) => {
      // executeBulkOperations: {operationInput, response | error}; bulk: responses in input order
      const status = r.response?.statusCode ?? r.statusCode ?? r.error?.code;
      const op = r.operationInput ?? ops[i] ?? {};
      if ((status >= 200 && status < 300) || (status === 404 && op.operationType === 'Delete')) acked++;
      else failed++;
    });
  } catch (e) {
    failed += ops.length;
    process.stderr.write(`diy-peer: bulk call failed: ${e.message}\n`);
  } finally {
    inFlight--;
  }
  if (expect && acked + failed >= expect) finish();
  pump();
}

let queued = 0;
let paused = false;
/** Start calls while slots are free: full chunks only, unless partial (timer, end of input). */
function pump(partial = true) {
  for (const route of routes.values()) {
    while (inFlight < concurrency && route.queue.length >= (partial ? 1 : chunkMax)) {
      const ops = route.queue.splice(0, chunkMax);
      queued -= ops.length;
      call(route, ops);
    }
  }
  // backpressure: stop reading while much more than the calls in flight is waiting
  if (paused && queued < concurrency * chunkMax) { paused = false; rl.resume(); }
  if (inputDone && inFlight === 0 && queued === 0) finish();
}

// Warm up like a long-running writer would be: the SDK reads the container's
// partition key definition and routing map on its first bulk call.
for (const route of routes.values()) {
  try {
    await route.container.items.bulk([{ operationType: 'Read', id: 'diy-warmup', partitionKey: 'diy-warmup' }]);
  } catch (e) {
    process.stderr.write(`diy-peer: warm-up failed: ${e.message}\n`);
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line || line[0] !== '{') return;
  let change;
  try { change = JSON.parse(line); } catch { return; }
  const a = change.action;
  if (a !== 'I' && a !== 'U' && a !== 'D') return;
  const route = routes.get(`${change.schema}.${change.table}`);
  if (!route) return;
  if (firstChangeAt === null) firstChangeAt = Date.now();
  if (change.lsn) lastLsn = change.lsn;
  route.queue.push(toOp(change, route));
  queued++;
  if (route.queue.length >= chunkMax) pump(false);
  if (!paused && queued >= 2 * concurrency * chunkMax) { paused = true; rl.pause(); }
});
rl.on('close', () => { inputDone = true; pump(); });
// pick up a partial chunk when input pauses
setInterval(pump, 5).unref();
process.on('SIGTERM', finish);
