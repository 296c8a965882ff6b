// cosmos_sink benchmark: one command, one machine, one report.
//
//   sudo test/bench/run [--quick] [--only a,b,c,d,e,f,g] [--no-perf] [--wait-quiet SECONDS]
//                       [--diy-api bulk|executeBulkOperations] [--diy-chunk N] [--out FILE] [--png FILE] [--perf-keep DIR]
//                       [--builds label=rev[:patch]|dir,... [--build-workloads hi,lo]]
//   BENCH_JSON=results.json sudo test/bench/run ...   also keep the raw results;
//   node test/bench/bench.mjs --from-json results.json  re-renders the report and plot only
//
// Measures, on the same WAL and the same endpoints:
//  (a) the decode ceiling: pg_logical_slot_peek_(binary_)changes with pgoutput and
//      wal2json (count only), plus pg_recvlogical streaming the same slots to /dev/null;
//  (b) cosmos_sink end to end into a null Cosmos endpoint (null-endpoint.mjs, HTTPS,
//      keep-alive), whose own capacity is measured too;
//  (c) cosmos_sink into the local emulator (@vercel/cosmosdb-server over HTTPS);
//  (d) the DIY peer (pg_recvlogical + wal2json -> @azure/cosmos bulk, diy-peer.mjs) into both;
//  (e) commit->ack latency p50/p99 at 5k changes/s offered by the Flink-style JDBC client;
//  (f) the fault proxy's RU budget mode: share of the budget used, share of requests throttled;
//      and max_ru_per_second = 'auto' under an offer while a second client spends the rest;
//  (g) the worker's peak RSS during a 1M-row transaction;
//  (h) a Flink-style replay of unchanged rows through the RU-charging fault proxy with
//      cosmos_sink.skip_unchanged on and off, and what comparing old and new rows costs
//      the plugin's decode rate when every UPDATE does change something.
// Writes test/bench/BENCHMARKS.md and test/bench/bench.png. Every process it
// starts is stopped at the end, also on failure or Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContainer, startEmulator, EMULATOR_KEY } from '../lib/emulator.mjs';
import { generateCerts } from '../lib/certs.mjs';
import { runFlinkLoad, compileFlink } from '../lib/flink.mjs';
import { PG_BIN, startPostgres } from '../lib/pg.mjs';
import { writeSecretFile } from '../lib/sink.mjs';
import { Cleanup, makeScratchDir, removeDir, sleep } from '../lib/util.mjs';
import { measureCapacity, startNullEndpoint } from './null-endpoint.mjs';
import { renderPlot } from './plot.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const PG_MAJOR = process.env.PG_MAJOR || '15';

// ---------------------------------------------------------------------------
// Options and sizes
// ---------------------------------------------------------------------------

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const opt = (name, def) => { const i = argv.indexOf(`--${name}`); return i >= 0 && argv[i + 1] ? argv[i + 1] : def; };
const QUICK = flag('quick');
const ONLY = new Set(opt('only', 'a,b,c,d,e,f,g,h').split(','));
const OUT = path.resolve(opt('out', path.join(here, 'BENCHMARKS.md')));
const PNG = path.resolve(opt('png', path.join(here, 'bench.png')));
const USE_PERF = !flag('no-perf');
const PERF_KEEP = opt('perf-keep', null);	// keep the raw perf data (call graphs) in this folder
// --builds label=rev[:patch]|dir,...: the same WAL through other builds too (before/after of each change)
const BUILDS = opt('builds', '').split(',').filter(Boolean).map((b) => { const [label, src] = b.split(/=(.*)/s); return { label, src }; });
const BUILD_WORKLOADS = new Set(opt('build-workloads', 'hi,lo').split(','));
const EXTRA_CONF = Object.fromEntries(argv.flatMap((a, i) => (a === '--conf' && argv[i + 1] ? [argv[i + 1].split(/=(.*)/s).slice(0, 2)] : [])));
const NULL_WORKLOADS = opt('workloads', 'hi,lo,small').split(',');
const WAIT_QUIET = Number(opt('wait-quiet', '0')); // seconds to wait for other processes to leave the cores alone

const SIZES = QUICK ? {
  txns: 200, // Flink-style transactions of 500 changes per null-endpoint workload (~100k changes)
  smallTxns: 200,
  emuTxns: 20, // into the emulator
  latencySeconds: 10,
  ruSeconds: 10,
  bigRows: 200000,
  capacitySeconds: 3,
  compareTxns: 200, // (h) transactions of 500 UPDATEs for the comparison's cost
} : {
  txns: 2000, // ~1M changes
  smallTxns: 2000,
  emuTxns: 300, // ~150k changes
  latencySeconds: 30,
  ruSeconds: 30,
  bigRows: 1000000,
  capacitySeconds: 5,
  compareTxns: 400,
};
const REPLAY_ROWS = 5000; // (h) the issue's replay: 5,000 unchanged rows, 10 transactions of 500
const COMPARE_ROUNDS = 15; // (h) peeks with skip_unchanged on and off, alternating (ABBA: neither always goes first)
const RATE = 5000; // (e) offered changes/s
const RU_BUDGET = 40000; // (f) RU/s per container at the fault proxy (~4k ops/s of ~1 KB: well within the emulator's reach)
const RU_CLIENT = 38000; // (f) cosmos_sink.max_ru_per_second, slightly below the budget
const RU_OFFER = 20000; // (f) 'auto': the container's provisioned RU/s at the fault proxy
const RU_SHARE = 0.5; // (f) 'auto': cosmos_sink.ru_share; a second client spends the rest
const PAYLOAD_1K = 870; // payload characters giving ~1 KB documents
const PAYLOAD_SMALL = 60; // ~200 B documents
const DIY_CONCURRENCY = 16;
// The DIY peer's SDK call: container.items.bulk (100 ops per call; the faster of the two
// here) or executeBulkOperations (any number per call, but each call lingers >= 1 s on
// its last partial batch); the other one is measured too on the high-cardinality workload.
const DIY_API = opt('diy-api', 'bulk');
const DIY_CHUNK = Number(opt('diy-chunk', DIY_API === 'bulk' ? '100' : '5000')); // changes per SDK call
const DIY_ALT = DIY_API === 'bulk' ? { api: 'executeBulkOperations', chunk: 5000 } : { api: 'bulk', chunk: 100 };

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const now = () => performance.now();
const num = (x) => (x === null || x === undefined ? null : Number(x));

// ---------------------------------------------------------------------------
// Workload generation (server-side, Flink-equivalent transactions)
// ---------------------------------------------------------------------------

const ORDERS_DDL = (t) => `CREATE TABLE ${t} (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
  amount numeric(12,2), status text, payload text, updated_at timestamptz)`;

// One transaction per loop turn, like one Flink JDBC batch after its
// per-key reduce: `ups` upserts (INSERT .. ON CONFLICT DO UPDATE) of distinct
// keys, then `dels` deletes of live keys, then COMMIT. Sequence numbers map
// to keys through a multiplicative permutation of the key space
// (K = txns * per_txn keys): deletes take seqs [0, Dt), upserts seqs
// [Dt, Dt + Ut) in a scrambled order. bench_prefill() inserts seqs [0, P)
// beforehand (outside the measured WAL), so the deletes hit live rows and the
// upserts of seqs below P are updates (REPLICA IDENTITY FULL logs the old
// row too), the others inserts, mixed in every transaction. No key is touched
// twice in the measured WAL: nothing can be coalesced, every change is one
// Cosmos operation for every system.
const ROW_SQL = `k, 'cust-' || (k % $3), (k % 100000) / 100.0 + 1,
             (ARRAY['NEW','PAID','SHIPPED','DELIVERED','CANCELLED'])[1 + (k + $1) % 5],
             substr(repeat(md5(k::text || $1::text), $5 / 32 + 1), 1, $5), clock_timestamp()`;
const LOAD_PROCEDURE = `CREATE OR REPLACE PROCEDURE bench_load(tbl regclass, txns int, parts int, payload int,
    per_txn int DEFAULT 500, del_pct int DEFAULT 10)
LANGUAGE plpgsql AS $$
DECLARE
  dels int := per_txn * del_pct / 100;
  ups int := per_txn - per_txn * del_pct / 100;
  dt bigint := txns::bigint * (per_txn * del_pct / 100);
  ut bigint := txns::bigint * (per_txn - per_txn * del_pct / 100);
  k bigint := txns::bigint * per_txn;
BEGIN
  FOR i IN 0..txns - 1 LOOP
    EXECUTE replace($q$INSERT INTO TBL AS t (order_id, customer_id, amount, status, payload, updated_at)
      SELECT ${ROW_SQL}
        FROM (SELECT 1 + (($6 + (u * 7919) % $7) * 2654435761) % $2 AS k
                FROM generate_series($1::bigint * $4, $1::bigint * $4 + $4 - 1) u) g
      ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, amount = EXCLUDED.amount,
        status = EXCLUDED.status, payload = EXCLUDED.payload, updated_at = EXCLUDED.updated_at$q$, 'TBL', tbl::text)
      USING i, k, parts, ups, payload, dt, ut;
    IF dels > 0 THEN
      EXECUTE replace($q$DELETE FROM TBL WHERE order_id IN
        (SELECT 1 + (s * 2654435761) % $2 FROM generate_series($1::bigint * $3, $1::bigint * $3 + $3 - 1) s)$q$, 'TBL', tbl::text)
        USING i, k, dels;
    END IF;
    COMMIT;
  END LOOP;
END $$`;
const PREFILL_PROCEDURE = `CREATE OR REPLACE PROCEDURE bench_prefill(tbl regclass, txns int, prefill bigint, parts int,
    payload int, per_txn int DEFAULT 500)
LANGUAGE plpgsql AS $$
DECLARE
  k bigint := txns::bigint * per_txn;
BEGIN
  FOR c IN 0..(prefill - 1) / 5000 LOOP
    EXECUTE replace($q$INSERT INTO TBL (order_id, customer_id, amount, status, payload, updated_at)
      SELECT ${ROW_SQL}
        FROM (SELECT 1 + (s * 2654435761) % $2 AS k
                FROM generate_series($4 * 5000, least($6, ($4 + 1) * 5000) - 1) s) g$q$, 'TBL', tbl::text)
      USING -1, k, parts, c::bigint, payload, prefill;
    COMMIT;
  END LOOP;
END $$`;

/** Workload descriptions. keys: size of the order_id space; parts: distinct customer_id values. */
function workloads() {
  // 40% of the upserts update rows that exist before the measured WAL, 60% insert;
  // the deletes (10% of the changes) remove pre-existing rows
  const mk = (name, table, txns, parts, payload, updateShare = 0.4) => {
    const dt = txns * 50;
    const ut = txns * 450;
    return { name, table, txns, parts, payload, updateShare, prefill: dt + Math.round(updateShare * ut), changes: dt + ut };
  };
  return {
    hi: mk('1 KB rows, high-cardinality pk', 'orders_hi', SIZES.txns, 100000, PAYLOAD_1K),
    lo: mk('1 KB rows, low-cardinality pk', 'orders_lo', SIZES.txns, 10, PAYLOAD_1K),
    small: mk('~200 B rows, high-cardinality pk', 'orders_small', SIZES.smallTxns, 100000, PAYLOAD_SMALL),
    emuHi: mk('1 KB rows, high-cardinality pk', 'emu_hi', SIZES.emuTxns, 100000, PAYLOAD_1K),
    emuLo: mk('1 KB rows, low-cardinality pk', 'emu_lo', SIZES.emuTxns, 10, PAYLOAD_1K),
  };
}

// ---------------------------------------------------------------------------
// Processes we start
// ---------------------------------------------------------------------------

const cleanup = new Cleanup();
const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
async function killChild(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  try { child.kill(signal); } catch { /* gone */ }
  const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
  await done;
  clearTimeout(t);
}
process.once('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping everything`);
    for (const c of children) await killChild(c);
    await cleanup.run().catch(() => {});
    await killDescendants();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------
// PostgreSQL with cosmos_sink pointed at an endpoint
// ---------------------------------------------------------------------------

let certs;
let scratch;
let keyFile;

async function startBenchPg(endpoint, conf = {}) {
  const pg = await startPostgres({
    conf: {
      'cosmos_sink.endpoint': endpoint,
      'cosmos_sink.ca_file': certs.caFile,
      'cosmos_sink.key_file': keyFile,
      max_wal_size: '4GB',
      checkpoint_timeout: '30min',
      max_replication_slots: '32',	// the decode ceilings, the DIY peers and one per --builds build
      ...conf,
      ...EXTRA_CONF,
    },
  });
  cleanup.add(() => pg.cleanup());
  roots.add(pg.postmasterPid());
  const [{ opl }] = await pg.query("SELECT current_setting('output_plugin_libraries', true) AS opl");
  if (opl && !/wal2json/.test(opl)) await pg.setConf({ output_plugin_libraries: `${opl}, wal2json` });
  await pg.query('CREATE EXTENSION cosmos_sink');
  await pg.query(LOAD_PROCEDURE);
  await pg.query(PREFILL_PROCEDURE);
  return pg;
}

async function status(pg) {
  return (await pg.query('SELECT * FROM cosmos_sink.status'))[0];
}

async function waitState(pg, state, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(pg);
    if (s?.state === state) return s;
    if (Date.now() > deadline) throw new Error(`worker not ${state} after ${timeoutMs} ms: ${JSON.stringify(s)}`);
    await sleep(50);
  }
}

/** Poll until the slot's confirmed LSN passed lsn with nothing in flight; returns seconds since t0. */
async function waitConfirmed(pg, lsn, t0, { timeoutMs = 900000, intervalMs = 20 } = {}) {
  const c = await pg.client();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows: [s] } = await c.query(
        'SELECT s.*, s.confirmed_lsn >= $1::pg_lsn AS passed FROM cosmos_sink.status s', [lsn]);
      if (s?.passed && s.in_flight_requests === 0) return { seconds: (now() - t0) / 1000, status: s };
      if (Date.now() > deadline) {
        throw new Error(`worker did not confirm ${lsn} in ${timeoutMs} ms: ${JSON.stringify(s)}\n${
          pg.serverLog().split('\n').filter((l) => /cosmos_sink|ERROR|FATAL/.test(l)).slice(-15).join('\n')}`);
      }
      await sleep(intervalMs);
    }
  } finally {
    await c.end().catch(() => {});
  }
}

async function containerStats(pg, table) {
  const rows = await pg.query('SELECT * FROM cosmos_sink.container_stats WHERE staging_table = $1::regclass', [table]);
  const r = rows[0] ?? {};
  return {
    upserts: num(r.upserts), deletes: num(r.deletes), requests: num(r.requests), throttled: num(r.throttled),
    retries: num(r.retries), deadLettered: num(r.dead_lettered), ru: num(r.ru_total),
    avgBatchOps: num(r.avg_batch_ops), p50: num(r.p50_ms), p99: num(r.p99_ms),
  };
}

// ---------------------------------------------------------------------------
// /proc helpers: CPU time and memory of a process, machine CPU
// ---------------------------------------------------------------------------

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
function procCpuMs(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch { return null; }
}
function procStatus(pid) {
  try {
    const out = {};
    for (const l of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const m = /^(VmHWM|VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB/.exec(l);
      if (m) out[m[1]] = Number(m[2]) * 1024;
    }
    return out;
  } catch { return null; }
}
function machineCpu() {
  const l = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = l[3] + l[4];
  const total = l.reduce((a, b) => a + b, 0);
  return { idle, total };
}
const cpuShare = (a, b) => (b.total - a.total > 0 ? 1 - (b.idle - a.idle) / (b.total - a.total) : null);

// Our processes: this one and its descendants, and the postmasters we started
// (pg_ctl daemonizes them) with theirs. Everything else is "foreign": other
// work on the machine that competes with the benchmark for the cores.
const roots = new Set([process.pid]);
function procTable() {
  const t = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fl = st.slice(st.lastIndexOf(')') + 2).split(' ');
      t.set(Number(d), { ppid: Number(fl[1]), ms: ((Number(fl[11]) + Number(fl[12])) * 1000) / CLK_TCK,
        comm: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')) });
    } catch { /* raced */ }
  }
  return t;
}
function ours(t) {
  const kids = new Map();
  for (const [pid, p] of t) { if (!kids.has(p.ppid)) kids.set(p.ppid, []); kids.get(p.ppid).push(pid); }
  const out = new Set();
  const stack = [...roots];
  while (stack.length) {
    const p = stack.pop();
    if (out.has(p)) continue;
    out.add(p);
    for (const c of kids.get(p) ?? []) stack.push(c);
  }
  return out;
}
/** Start measuring machine CPU and other processes' CPU; end() -> {machine, foreign (cores), top} */
function measureCpu() {
  const m0 = machineCpu();
  const t0 = procTable();
  const w0 = now();
  return {
    end() {
      const m1 = machineCpu();
      const t1 = procTable();
      const wall = now() - w0;
      const mine = new Set([...ours(t0), ...ours(t1)]);
      let foreign = 0;
      const by = new Map();
      for (const [pid, p] of t1) {
        if (mine.has(pid)) continue;
        const d = p.ms - (t0.get(pid)?.ms ?? 0);
        if (d > 0) { foreign += d; by.set(p.comm, (by.get(p.comm) ?? 0) + d); }
      }
      const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, 3).filter(([, d]) => d / wall > 0.05)
        .map(([c, d]) => `${c} ${(d / wall * 100).toFixed(0)}%`);
      return { machine: cpuShare(m0, m1), foreign: foreign / wall, top };
    },
  };
}

// ---------------------------------------------------------------------------
// perf (optional): where the worker spends its time
// ---------------------------------------------------------------------------

let perfWorks = null;
function perfAvailable() {
  if (perfWorks !== null) return perfWorks;
  const r = spawnSync('perf', ['record', '-e', 'cpu-clock', '-o', '/dev/null', '--', 'true'], { encoding: 'utf8' });
  perfWorks = r.status === 0;
  return perfWorks;
}
function startPerf(pid) {
  if (!USE_PERF || !perfAvailable()) return null;
  const file = path.join(scratch, `perf-${pid}.data`);
  const child = track(spawn('perf', ['record', '-e', 'cpu-clock', '-F', '499', '-g', '-p', String(pid), '-o', file],
    { stdio: ['ignore', 'ignore', 'ignore'] }));
  return { child, file };
}
async function stopPerf(p) {
  if (!p) return null;
  await killChild(p.child, 'SIGINT');
  if (PERF_KEEP) copyFileSync(p.file, path.join(PERF_KEEP, path.basename(p.file)));
  const r = spawnSync('perf', ['report', '-i', p.file, '--stdio', '--no-children', '--sort', 'dso,symbol', '-g', 'none',
    '--percent-limit', '1.5'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const lines = (r.stdout || '').split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, 18)
    .map((l) => l.trim().replace(/\s+-\s+-\s*$/, '').replace(/\s+/g, ' '));
  const r2 = spawnSync('perf', ['report', '-i', p.file, '--stdio', '--no-children', '--sort', 'dso', '-g', 'none'],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const dsos = (r2.stdout || '').split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, 8).map((l) => l.trim().replace(/\s+-\s+-\s*$/, '').replace(/\s+/g, ' '));
  return { symbols: lines, dsos };
}

// ---------------------------------------------------------------------------
// Decode ceiling, DIY peer, cosmos_sink runs
// ---------------------------------------------------------------------------

const PGOUTPUT_OPTS = (pub) => `'proto_version', '1', 'publication_names', '${pub}'`;
const W2J_OPTS = (table) => `'format-version', '2', 'include-transaction', 'false', 'add-tables', 'public.${table}'`;

async function timedCount(pg, sql) {
  const c = await pg.client();
  try {
    const t0 = now();
    const { rows: [r] } = await c.query(sql);
    return { seconds: (now() - t0) / 1000, count: Number(r.n), rows: Number(r.m ?? r.n) };
  } finally {
    await c.end().catch(() => {});
  }
}

function recvlogicalArgs(pg, slot, pluginOpts, extra = []) {
  const args = ['-h', pg.host, '-p', String(pg.port), '-U', 'postgres', '-d', pg.database, '--slot', slot, '--start',
    '--no-loop', '-f', '-'];
  for (const [k, v] of pluginOpts) args.push('-o', `${k}=${v}`);
  return [...args, ...extra];
}

/** pg_recvlogical streaming a slot to /dev/null up to endpos: the walsender path's decode rate. */
async function streamToNull(pg, slot, pluginOpts, endpos) {
  const t0 = now();
  const child = track(spawn(path.join(PG_BIN, 'pg_recvlogical'), recvlogicalArgs(pg, slot, pluginOpts, ['--endpos', endpos]),
    { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`pg_recvlogical ${slot} exited ${code}: ${err}`);
  return (now() - t0) / 1000;
}

/** The DIY peer: pg_recvlogical | node diy-peer.mjs, timed until every change was acknowledged. */
async function runDiy(pg, { slot, table, endpoint, container, expect, timeoutMs = 900000, api = DIY_API, chunk = DIY_CHUNK }) {
  const t0 = now();
  const recv = track(spawn(path.join(PG_BIN, 'pg_recvlogical'), recvlogicalArgs(pg, slot,
    [['format-version', '2'], ['include-lsn', 'true'], ['add-tables', `public.${table}`]]), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let recvErr = '';
  recv.stderr.on('data', (d) => { recvErr += d; });
  const diy = track(spawn(process.execPath, [path.join(here, 'diy-peer.mjs'), '--endpoint', endpoint, '--ca', certs.caFile,
    '--key', EMULATOR_KEY, '--route', `public.${table}=bench/${container}/customer_id/order_id`, '--expect', String(expect),
    '--concurrency', String(DIY_CONCURRENCY), '--api', api, '--chunk', String(chunk)], { stdio: [recv.stdout, 'pipe', 'pipe'], cwd: path.join(here, '..') }));
  let out = '';
  let err = '';
  diy.stdout.on('data', (d) => { out += d; });
  diy.stderr.on('data', (d) => { err += d; });
  const timer = setTimeout(() => { killChild(diy); }, timeoutMs);
  const code = await new Promise((r) => diy.once('exit', (c) => r(c)));
  const seconds = (now() - t0) / 1000;
  clearTimeout(timer);
  await killChild(recv);
  let summary = null;
  try { summary = JSON.parse(out.trim().split('\n').pop()); } catch { /* none */ }
  if (!summary) throw new Error(`DIY peer exited ${code} without a summary:\n${err.slice(-2000)}\n${recvErr.slice(-1000)}`);
  if (err.trim()) log(`DIY peer stderr: ${err.trim().split('\n').slice(-3).join(' | ')}`);
  return { ...summary, seconds, rate: summary.acked / seconds, complete: summary.acked >= expect };
}

/**
 * One workload over one endpoint: pause the worker, make the slots, load, measure the
 * decode ceiling (optional), cosmos_sink end to end, the DIY peer (optional), then clean up.
 */
async function runWorkload(pg, w, { endpoint, kind, ne, decode = true, diy = true, diyAlt = false, emulator = null, perf = false, builds = false }) {
  const r = { workload: w, kind };
  const { table } = w;
  const pub = `pub_${table}`;
  log(`${kind}/${table}: ${w.name}, ${w.txns} transactions`);
  await pg.query(ORDERS_DDL(table));
  if (emulator) {
    await createContainer(emulator.endpoint, emulator.caFile, 'bench', table, ['/customer_id']);
    if (diy) await createContainer(emulator.endpoint, emulator.caFile, 'bench', `${table}_diy`, ['/customer_id']);
  }
  await pg.query(`SELECT cosmos_sink.add_route('${table}', 'bench', '${table}', '{customer_id}')`);
  await pg.query(`CREATE PUBLICATION ${pub} FOR TABLE ${table}`);
  // rows the measured changes update or delete: written (and forwarded) before the measured WAL
  let t0 = now();
  await pg.query('CALL bench_prefill($1, $2, $3, $4, $5)', [table, w.txns, w.prefill, w.parts, w.payload]);
  await waitConfirmed(pg, (await pg.query('SELECT pg_current_wal_lsn() AS l'))[0].l, now(), { timeoutMs: 900000 });
  log(`  prefilled ${w.prefill} rows (forwarded too) in ${((now() - t0) / 1000).toFixed(1)} s`);
  // while paused the worker still decodes up to cosmos_sink.buffer_size: keep
  // that head start small (1MB, the minimum) until the measurement starts
  await pg.setConf({ 'cosmos_sink.buffer_size': '1MB' });
  await pg.query('SELECT cosmos_sink.pause()');
  await waitState(pg, 'paused');
  const slots = [];
  if (decode) slots.push([`${table}_pgo`, 'pgoutput'], [`${table}_w2j`, 'wal2json'], [`${table}_cs`, 'cosmos_sink']);
  const variants = !diy ? [] : diyAlt ? [['diy', DIY_API, DIY_CHUNK], ['diyAlt', DIY_ALT.api, DIY_ALT.chunk]] : [['diy', DIY_API, DIY_CHUNK]];
  for (const [key] of variants) slots.push([`${table}_${key.toLowerCase()}`, 'wal2json']);
  for (const [s, plugin] of slots) await pg.query('SELECT pg_create_logical_replication_slot($1, $2)', [s, plugin]);
  // other builds read the same WAL from copies of the worker's slot
  const buildSlots = builds ? BUILDS.map((b, i) => `${table}_build${i}`) : [];
  for (const s of buildSlots) {
    await pg.query("SELECT pg_copy_logical_replication_slot(current_setting('cosmos_sink.slot_name'), $1)", [s]);
    slots.push([s]);
  }

  // load
  const [{ l0 }] = await pg.query('SELECT pg_current_wal_lsn() AS l0');
  t0 = now();
  await pg.query('CALL bench_load($1, $2, $3, $4)', [table, w.txns, w.parts, w.payload]);
  r.loadSeconds = (now() - t0) / 1000;
  const [{ l1, wal }] = await pg.query('SELECT pg_current_wal_lsn() AS l1, pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS wal', [l0]);
  const [{ rows, live, avgdoc }] = await pg.query(`SELECT count(*) AS rows, count(*) AS live,
    avg(octet_length((to_jsonb(t) || jsonb_build_object('id', order_id::text))::text)) AS avgdoc FROM ${table} t`);
  r.walBytes = Number(wal);
  r.liveRows = Number(live);
  r.avgDocBytes = Math.round(Number(avgdoc));
  r.expectedChanges = w.changes;
  r.endLsn = l1;
  log(`  loaded ${r.expectedChanges} changes (${rows} rows live, ${(r.walBytes / 1e6).toFixed(0)} MB WAL, docs ~${r.avgDocBytes} B) in ${r.loadSeconds.toFixed(1)} s`);

  // (a) decode ceiling
  if (decode) {
    const mc0 = measureCpu();
    // best of two: a ceiling is what the machine can do
    const best = async (sql) => { const a = await timedCount(pg, sql); const b = await timedCount(pg, sql); return a.seconds <= b.seconds ? { ...a, other: b.seconds } : { ...b, other: a.seconds }; };
    r.pgoutput = await best(`SELECT count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68)) AS n, count(*) AS m
      FROM pg_logical_slot_peek_binary_changes('${table}_pgo', NULL, NULL, ${PGOUTPUT_OPTS(pub)})`);
    r.wal2json = await best(`SELECT count(*) AS n FROM pg_logical_slot_peek_changes('${table}_w2j', NULL, NULL, ${W2J_OPTS(table)})`);
    r.csPlugin = await best(`SELECT count(*) AS n FROM pg_logical_slot_peek_binary_changes('${table}_cs', NULL, NULL, 'format', 'binary')`);
    r.changes = r.pgoutput.count;
    r.decodeForeignCpu = mc0.end().foreign;
    log(`  decode: pgoutput ${rate(r.changes, r.pgoutput.seconds)}/s, wal2json ${rate(r.wal2json.count, r.wal2json.seconds)}/s, cosmos_sink plugin ${rate(r.changes, r.csPlugin.seconds)}/s (peek, count only; other processes ${(r.decodeForeignCpu * 100).toFixed(0)}% of a core)`);
  } else {
    r.changes = r.expectedChanges;
  }

  // (b)/(c) cosmos_sink end to end
  await pg.query('SELECT cosmos_sink.reset_stats()');
  if (ne) await ne.reset();
  const [{ headStart }] = await pg.query('SELECT pg_wal_lsn_diff(decoded_lsn, $1) AS "headStart" FROM cosmos_sink.worker_status()', [l0]);
  r.headStartBytes = Math.max(0, Number(headStart));
  const st0 = await status(pg);
  const pid = st0.worker_pid;
  const cpu0 = procCpuMs(pid);
  const mc = measureCpu();
  const prof = perf ? startPerf(pid) : null;
  t0 = now();
  // the full buffer again (a reload), and go
  await pg.setConf({ 'cosmos_sink.buffer_size': EXTRA_CONF['cosmos_sink.buffer_size'] ?? null });
  await pg.query('SELECT cosmos_sink.resume()');
  const done = await waitConfirmed(pg, l1, t0);
  const cpu = mc.end();
  const perfOut = await stopPerf(prof);
  r.cs = {
    seconds: done.seconds,
    rate: r.changes / done.seconds,
    workerCpu: (procCpuMs(pid) - cpu0) / 1000 / done.seconds,
    machineCpu: cpu.machine,
    foreignCpu: cpu.foreign,
    foreignTop: cpu.top,
    stats: await containerStats(pg, table),
    perf: perfOut,
  };
  if (ne) {
    const s = await ne.stats();
    r.cs.endpoint = { ops: s.ops, requests: s.requests, cpu: s.cpuMs / 1000 / done.seconds, live: s.live[`bench/${table}`] ?? 0,
      bytesIn: s.bytesIn, batchRequests: s.batchRequests, bulkRequests: s.bulkRequests };
    r.cs.liveOk = r.cs.endpoint.live === r.liveRows;
  }
  log(`  cosmos_sink -> ${kind}: ${r.changes} changes in ${done.seconds.toFixed(2)} s = ${rate(r.changes, done.seconds)}/s `
    + `(worker CPU ${(r.cs.workerCpu * 100).toFixed(0)}%, ${r.cs.stats.requests} requests, ${r.cs.stats.avgBatchOps?.toFixed(1)} ops/request`
    + `${ne ? `, endpoint CPU ${(r.cs.endpoint.cpu * 100).toFixed(0)}%, live ids ${r.cs.endpoint.live}/${r.liveRows}` : ''}`
    + `; other processes ${(cpu.foreign * 100).toFixed(0)}% of a core${cpu.top.length ? ` (${cpu.top.join(', ')})` : ''})`);

  if (builds) r.builds = await runBuilds(pg, table, l1, r.changes, ne, buildSlots);

  // (d) DIY peer
  for (const [key, api, chunk] of variants) {
    if (ne) await ne.reset();
    const mc2 = measureCpu();
    const d = await runDiy(pg, { slot: `${table}_${key.toLowerCase()}`, table, endpoint, api, chunk,
      container: emulator ? `${table}_diy` : table, expect: r.changes });
    const cpu2 = mc2.end();
    Object.assign(d, { api, chunk, machineCpu: cpu2.machine, foreignCpu: cpu2.foreign, foreignTop: cpu2.top });
    if (ne) {
      const s = await ne.stats();
      d.endpoint = { ops: s.ops, requests: s.requests, cpu: s.cpuMs / 1000 / d.seconds, live: s.live[`bench/${table}`] ?? 0 };
    }
    r[key] = d;
    log(`  DIY peer (${api}, ${chunk}/call) -> ${kind}: ${d.acked}/${r.changes} acknowledged in ${d.seconds.toFixed(2)} s = ${rate(d.acked, d.seconds)}/s `
      + `(${d.calls} SDK calls${d.failed ? `, ${d.failed} failed` : ''}; other processes ${(cpu2.foreign * 100).toFixed(0)}% of a core)`);
  }

  // (a) again, through the walsender: pg_recvlogical to /dev/null (consumes the slots)
  if (decode) {
    r.pgoutputStream = await streamToNull(pg, `${table}_pgo`, [['proto_version', '1'], ['publication_names', pub]], l1);
    r.wal2jsonStream = await streamToNull(pg, `${table}_w2j`, [['format-version', '2'], ['include-transaction', 'false'], ['add-tables', `public.${table}`]], l1);
    log(`  decode via pg_recvlogical: pgoutput ${rate(r.changes, r.pgoutputStream)}/s, wal2json ${rate(r.changes, r.wal2jsonStream)}/s`);
  }

  for (const [s] of slots) await pg.query('SELECT pg_drop_replication_slot($1)', [s]);
  await pg.query(`DROP PUBLICATION ${pub}`);
  await pg.query(`SELECT cosmos_sink.remove_route('${table}')`);
  await pg.query(`DROP TABLE ${table}`);
  await pg.query('CHECKPOINT');
  return r;
}

/** Build every --builds source once (a git revision is exported into the scratch folder) */
function prepareBuilds() {
  for (const b of BUILDS) {
    if (existsSync(b.src) && statSync(b.src).isDirectory()) {
      b.dir = path.resolve(b.src);
      b.rev = sh('git', ['-C', b.dir, 'rev-parse', '--short', 'HEAD']) ?? b.src;
    } else {
      // rev, or rev:patch (a variant: the revision with a patch applied, e.g. test/bench/variants/*.patch)
      const [rev, patch] = b.src.split(':');
      b.rev = sh('git', ['-C', repoRoot, 'rev-parse', '--short', rev]);
      if (!b.rev) throw new Error(`--builds ${b.label}=${b.src}: neither a folder nor a git revision`);
      b.dir = path.join(scratch, `build-${b.label}`);
      mkdirSync(b.dir, { recursive: true });
      const r = spawnSync('sh', ['-c', `git -C '${repoRoot}' archive '${rev}' | tar -x -C '${b.dir}'`], { stdio: 'inherit' });
      if (r.status !== 0) throw new Error(`git archive ${rev} failed`);
      if (patch) {
        const p = spawnSync('patch', ['-s', '-p1', '-d', b.dir, '-i', path.resolve(repoRoot, patch)], { stdio: 'inherit' });
        if (p.status !== 0) throw new Error(`--builds ${b.label}: ${patch} does not apply to ${rev}`);
        b.rev += ` + ${path.basename(patch)}`;
      }
    }
    const m = spawnSync('make', ['-s', '-C', b.dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (m.status !== 0) throw new Error(`build ${b.label} (${b.dir}) failed`);
    log(`build ${b.label}: ${b.rev} in ${b.dir}`);
  }
}

function installBuild(dir) {
  const m = spawnSync('make', ['-s', '-C', dir, 'install'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (m.status !== 0) throw new Error(`make install in ${dir} failed`);
}

/**
 * The same WAL through each --builds build, in turn: install it, restart the
 * server with the worker disabled on a copy of the slot, enable it and time
 * until every change is confirmed. The tree under test is reinstalled after.
 */
async function runBuilds(pg, table, endLsn, changes, ne, buildSlots) {
  const out = [];
  try {
    for (const [i, b] of BUILDS.entries()) {
      installBuild(b.dir);
      await pg.setConf({ 'cosmos_sink.slot_name': buildSlots[i], 'cosmos_sink.enabled': 'off' }, { reload: false });
      await pg.restart();
      roots.add(pg.postmasterPid());
      await waitState(pg, 'paused');
      const pid = (await status(pg)).worker_pid;
      const cpu0 = procCpuMs(pid);
      if (ne) await ne.reset();
      const t0 = now();
      await pg.setConf({ 'cosmos_sink.enabled': null });
      const done = await waitConfirmed(pg, endLsn, t0);
      const stats = await containerStats(pg, table);
      const e = ne ? await ne.stats() : null;
      const res = {
        label: b.label, src: b.src, rev: b.rev, seconds: done.seconds, rate: changes / done.seconds,
        workerCpu: (procCpuMs(pid) - cpu0) / 1000 / done.seconds, requests: stats.requests, avgOps: stats.avgBatchOps,
        endpointCpu: e ? e.cpuMs / 1000 / done.seconds : null, endpointOps: e?.ops ?? null,
      };
      out.push(res);
      log(`  build ${b.label} (${b.rev}): ${changes} changes in ${done.seconds.toFixed(2)} s = ${rate(changes, done.seconds)}/s `
        + `(worker CPU ${(res.workerCpu * 100).toFixed(0)}%, ${res.requests} requests, ${res.avgOps?.toFixed(1)} ops/request`
        + `${e ? `, endpoint CPU ${(res.endpointCpu * 100).toFixed(0)}%` : ''})`);
    }
  } finally {
    installBuild(repoRoot);
    await pg.setConf({ 'cosmos_sink.slot_name': null, 'cosmos_sink.enabled': null }, { reload: false });
    await pg.restart();
    roots.add(pg.postmasterPid());
    await waitState(pg, 'idle', 60000).catch(() => {});
  }
  return out;
}

const rate = (n, s) => fmtNum(n / s);
function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return 'n/a';
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  if (v >= 100) return `${Math.round(v)}`;
  return v.toFixed(1);
}

// ---------------------------------------------------------------------------
// (e) latency at a fixed offered rate
// ---------------------------------------------------------------------------

const TOUCH_TRIGGER = (t) => `CREATE FUNCTION ${t}_touch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
  CREATE TRIGGER ${t}_touch BEFORE INSERT OR UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION ${t}_touch()`;

async function runLatency(pg, ne, { endpoint, who }) {
  const table = who === 'diy' ? 'lat_diy' : 'lat_cs';
  const rows = RATE * SIZES.latencySeconds;
  await pg.query(ORDERS_DDL(table));
  await pg.psql(`${TOUCH_TRIGGER(table)};`);
  let diyP = null;
  if (who === 'cosmos_sink') {
    await pg.query(`SELECT cosmos_sink.add_route('${table}', 'bench', '${table}', '{customer_id}')`);
    await pg.query('SELECT cosmos_sink.resume()');
    await waitConfirmed(pg, (await pg.query('SELECT pg_current_wal_lsn() AS l'))[0].l, now(), { timeoutMs: 60000 });
  } else {
    // the worker is paused so it does not compete for the CPU; the DIY peer streams live
    await pg.query('SELECT cosmos_sink.pause()');
    await pg.query("SELECT pg_create_logical_replication_slot('lat_diy', 'wal2json'), pg_create_logical_replication_slot('lat_count', 'wal2json')");
  }
  await ne.reset();
  await ne.set({ latencyField: 'updated_at' });
  if (who === 'diy') {
    // the peer runs until every change of the load was acknowledged; expect is set after the load
    diyP = runDiy(pg, { slot: 'lat_diy', table, endpoint, container: table, expect: 0, timeoutMs: (SIZES.latencySeconds + 120) * 1000 });
    await sleep(1500); // SDK and connection warm-up before the first change
  }
  log(`(e) ${who}: Flink JDBC client at ${RATE} changes/s for ${SIZES.latencySeconds} s`);
  const t0 = now();
  const summary = await runFlinkLoad({ url: pg.jdbcUrl(), table, rows, keys: 100000, partitions: 100000, batch: 500,
    rate: RATE, deletePct: 10, seed: 7, payload: PAYLOAD_1K, timeoutMs: (SIZES.latencySeconds + 120) * 1000 });
  const loadSeconds = (now() - t0) / 1000;
  const [{ l1 }] = await pg.query('SELECT pg_current_wal_lsn() AS l1');
  let out;
  if (who === 'cosmos_sink') {
    await waitConfirmed(pg, l1, now(), { timeoutMs: 120000 });
    out = { stats: await containerStats(pg, table) };
    await pg.query(`SELECT cosmos_sink.remove_route('${table}')`);
  } else {
    // wait until the endpoint saw as many upserts as the table took (after Flink's reduce), then stop the peer
    const [{ n }] = await pg.query(`SELECT count(*) AS n FROM pg_logical_slot_peek_changes('lat_count', NULL, NULL, ${W2J_OPTS(table)})`);
    const deadline = Date.now() + 120000;
    for (;;) {
      const s = await ne.stats();
      if (s.ops >= Number(n) || Date.now() > deadline) break;
      await sleep(100);
    }
    for (const c of children) if (c.spawnargs.some((a) => /diy-peer/.test(a))) await killChild(c);
    await diyP.catch(() => null);
    await pg.query("SELECT pg_drop_replication_slot('lat_diy'), pg_drop_replication_slot('lat_count')");
    await pg.query('SELECT cosmos_sink.resume()');
    out = {};
  }
  const s = await ne.stats();
  await ne.set({ latencyField: null });
  const exact = await commitToAck(pg, ne, table);
  await pg.query(`DROP TABLE ${table}`);
  const res = { who, changes: summary.changes, offered: summary.changes / loadSeconds, loadSeconds, writeToAck: s.latency,
    latency: exact.latency, matched: exact.matched, txnSpan: exact.txnSpan, endpointCpu: s.cpuMs / 1000 / loadSeconds, ops: s.ops, ...out };
  log(`  ${who}: ${summary.changes} changes at ${fmtNum(res.offered)}/s offered: commit->ack p50 ${fmtMs(res.latency.p50)}, p99 ${fmtMs(res.latency.p99)} `
    + `(max ${fmtMs(res.latency.max)}, ${res.latency.count} docs matched to their commit); row write->ack p50 ${fmtMs(s.latency.p50)}, p99 ${fmtMs(s.latency.p99)}`);
  return res;
}

const fmtMs = (v) => (v === null || v === undefined ? 'n/a' : `${Number(v).toFixed(1)} ms`);
const pctOf = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);

/**
 * Exact commit->ack: each document the endpoint timed is matched (id + the
 * row's updated_at to the millisecond) with the row version still in the table,
 * whose commit time is pg_xact_commit_timestamp(xmin) (track_commit_timestamp=on);
 * versions overwritten or deleted later cannot be matched and are left out.
 */
async function commitToAck(pg, ne, table) {
  const d = await ne.latencyDocs();
  const rows = await pg.query(`SELECT order_id::text AS id, floor(extract(epoch FROM updated_at) * 1000)::float8 AS w,
    extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 AS c FROM ${table}`);
  const commit = new Map(rows.filter((r) => r.c !== null).map((r) => [`${r.id}@${r.w}`, Number(r.c)]));
  const lat = [];
  for (let i = 0; i < d.id.length; i++) {
    const c = commit.get(`${d.id[i]}@${Math.floor(d.written[i])}`);
    if (c !== undefined) lat.push(d.arrived[i] - c);
  }
  const sorted = Float64Array.from(lat).sort();
  // how long a transaction's row writes span (row write -> commit is at most that)
  const [span] = await pg.query(`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, max(ms) AS max FROM
    (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - min(updated_at)) * 1000 AS ms FROM ${table} GROUP BY xmin HAVING count(*) >= 50) s`);
  return {
    latency: { count: sorted.length, p50: pctOf(sorted, 0.5), p90: pctOf(sorted, 0.9), p99: pctOf(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1] : null },
    matched: d.id.length ? sorted.length / d.id.length : 0,
    txnSpan: { p50: num(span?.p50), max: num(span?.max) },
  };
}

// ---------------------------------------------------------------------------
// (f) RU budget through the fault proxy
// ---------------------------------------------------------------------------

async function runRuBudget(emu) {
  const proxyLib = path.join(here, '..', 'lib', 'fault-proxy.mjs');
  if (!existsSync(proxyLib)) return { skipped: 'fault proxy not available (test/lib/fault-proxy.mjs missing)' };
  let startFaultProxy;
  try {
    ({ startFaultProxy } = await import(proxyLib));
  } catch (e) {
    return { skipped: `fault proxy not available (${e.message.split('\n')[0]})` };
  }
  const proxy = await startFaultProxy({ emulator: emu, ruPerSecond: RU_BUDGET });
  cleanup.add(() => proxy.stop());
  const pg = await startBenchPg(proxy.endpoint, { 'cosmos_sink.max_ru_per_second': RU_CLIENT });
  try {
    const table = 'ru_orders';
    // ~RU_CLIENT / 10 RU per 1 KB op = changes per second; a backlog for SIZES.ruSeconds
    const txns = Math.max(4, Math.round((RU_CLIENT / 10) * SIZES.ruSeconds / 500));
    await pg.query(ORDERS_DDL(table));
    await createContainer(emu.endpoint, emu.caFile, 'bench', table, ['/customer_id']);
    await pg.query(`SELECT cosmos_sink.add_route('${table}', 'bench', '${table}', '{customer_id}')`);
    // the rows the deletes remove exist (and were forwarded) first; the upserts insert
    await pg.query('CALL bench_prefill($1, $2, $3, $4, $5)', [table, txns, txns * 50, 100000, PAYLOAD_1K]);
    await waitConfirmed(pg, (await pg.query('SELECT pg_current_wal_lsn() AS l'))[0].l, now(), { timeoutMs: 300000 });
    await pg.query('SELECT cosmos_sink.pause()');
    await waitState(pg, 'paused');
    await pg.query('CALL bench_load($1, $2, $3, $4)', [table, txns, 100000, PAYLOAD_1K]);
    const [{ l1 }] = await pg.query('SELECT pg_current_wal_lsn() AS l1');
    await pg.query('SELECT cosmos_sink.reset_stats()');
    await proxy.reset();
    log(`(f) RU budget ${RU_BUDGET} RU/s at the fault proxy, cosmos_sink.max_ru_per_second = ${RU_CLIENT}: ${txns} transactions`);
    const t0 = now();
    await pg.query('SELECT cosmos_sink.resume()');
    const done = await waitConfirmed(pg, l1, t0, { timeoutMs: (SIZES.ruSeconds * 6 + 120) * 1000 });
    const l = await proxy.ledger();
    const stats = await containerStats(pg, table);
    const res = {
      budget: RU_BUDGET, client: RU_CLIENT, seconds: done.seconds, changes: txns * 500,
      ru: l.ru, ruPerSecond: l.ru / done.seconds, used: l.ru / (RU_BUDGET * done.seconds),
      writeRequests: l.writeRequests, throttled: l.throttled, throttledShare: l.writeRequests ? l.throttled / l.writeRequests : 0,
      opsThrottled: l.opsThrottled, ops: l.ops, workerRu: stats.ru, workerThrottled: stats.throttled, stats,
    };
    log(`  ${fmtNum(res.ruPerSecond)} RU/s = ${(res.used * 100).toFixed(1)}% of the budget; ${res.throttled}/${res.writeRequests} requests throttled (${(res.throttledShare * 100).toFixed(2)}%)`);
    return res;
  } finally {
    await pg.cleanup();
    await proxy.stop();
  }
}

// (f) 'auto': the budget follows the container's offer while a second client
// spends the rest of its RU/s; the sink's share used and its 429s, from the
// proxy's records of the sink's own requests (steady state: a second off each end)
async function runRuAuto(emu) {
  const { startFaultProxy } = await import(path.join(here, '..', 'lib', 'fault-proxy.mjs'));
  const { startRuConsumer } = await import(path.join(here, '..', 'lib', 'ru-consumer.mjs'));
  const table = 'ru_auto';
  const proxy = await startFaultProxy({ emulator: emu, offers: { [`bench/${table}`]: { throughput: RU_OFFER } } });
  cleanup.add(() => proxy.stop());
  const pg = await startBenchPg(proxy.endpoint, {
    'cosmos_sink.max_ru_per_second': 'auto', 'cosmos_sink.ru_share': RU_SHARE, 'cosmos_sink.ca_file': proxy.caFile,
  });
  let consumer;
  try {
    const share = RU_OFFER * RU_SHARE;
    const txns = Math.max(4, Math.round((share / 10) * SIZES.ruSeconds / 500));
    await pg.query(ORDERS_DDL(table));
    await createContainer(emu.endpoint, emu.caFile, 'bench', table, ['/customer_id']);
    await pg.query(`SELECT cosmos_sink.add_route('${table}', 'bench', '${table}', '{customer_id}')`);
    await pg.query('CALL bench_prefill($1, $2, $3, $4, $5)', [table, 1, 10, 100000, PAYLOAD_1K]);
    await waitConfirmed(pg, (await pg.query('SELECT pg_current_wal_lsn() AS l'))[0].l, now(), { timeoutMs: 300000 });
    await pg.query('SELECT cosmos_sink.pause()');
    await waitState(pg, 'paused');
    await pg.query('CALL bench_load($1, $2, $3, $4, 500, 0)', [table, txns, 100000, PAYLOAD_1K]);
    const [{ l1 }] = await pg.query('SELECT pg_current_wal_lsn() AS l1');
    const [budget] = await pg.query(`SELECT provisioned_ru_per_second, ru_budget, ru_budget_source
      FROM cosmos_sink.container_stats WHERE container = $1`, [table]);
    consumer = await startRuConsumer({ endpoint: proxy.endpoint, key: EMULATOR_KEY, ca: proxy.caFile,
      db: 'bench', coll: table, pkPath: 'customer_id', ruPerSecond: RU_OFFER - share });
    await proxy.reset();
    log(`(f) 'auto': offer ${RU_OFFER} RU/s, ru_share ${RU_SHARE}, a second client at ${RU_OFFER - share} RU/s: ${txns} transactions`);
    const t0 = now();
    const wall0 = Date.now();
    await pg.query('SELECT cosmos_sink.resume()');
    const done = await waitConfirmed(pg, l1, t0, { timeoutMs: (SIZES.ruSeconds * 6 + 120) * 1000 });
    const other = await consumer.stop();
    consumer = null;
    const mine = (await proxy.requests()).filter((r) => /^cosmos_sink\//.test(r.agent ?? '')
      && (r.kind === 'batch' || r.kind === 'bulk') && r.at >= wall0);
    const acked = mine.filter((r) => r.status === 200 || r.status === 207);
    const first = Math.min(...acked.map((r) => r.at)) + 1000;
    const last = Math.max(...acked.map((r) => r.at)) - 1000;
    const ru = acked.filter((r) => r.at >= first && r.at < last).reduce((s, r) => s + r.ru, 0);
    const res = {
      offer: RU_OFFER, share: RU_SHARE, budget: budget?.ru_budget ?? null, source: budget?.ru_budget_source ?? null,
      changes: txns * 500, seconds: done.seconds, ruPerSecond: ru / ((last - first) / 1000),
      writeRequests: mine.length, throttled: mine.filter((r) => r.status === 429).length,
      other: { ruPerSecond: other.ru / done.seconds, requests: other.requests, throttled: other.throttled },
    };
    res.used = res.ruPerSecond / share;
    res.throttledShare = res.writeRequests ? res.throttled / res.writeRequests : 0;
    log(`  ${fmtNum(res.ruPerSecond)} RU/s = ${(res.used * 100).toFixed(1)}% of the share; ${res.throttled}/${res.writeRequests} requests throttled; the other client ${fmtNum(res.other.ruPerSecond)} RU/s, ${res.other.throttled}/${res.other.requests} throttled`);
    return res;
  } finally {
    await consumer?.stop();
    await pg.cleanup();
    await proxy.stop();
  }
}

// ---------------------------------------------------------------------------
// (h) replay of unchanged rows: RU with skip_unchanged on and off, cost of the comparison
// ---------------------------------------------------------------------------

// Flink's JDBC upsert of keys [1, txns * 500], 500 per transaction, values a
// function of the key and `version` only: the same version again is a replay
// that changes nothing; version + 1 changes only the last column (updated_at),
// so the comparison runs through every column before it finds the difference.
const REPLAY_PROCEDURE = `CREATE OR REPLACE PROCEDURE bench_upsert(tbl regclass, txns int, payload int, version int)
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 0..txns - 1 LOOP
    EXECUTE replace($q$INSERT INTO TBL AS t (order_id, customer_id, amount, status, payload, updated_at)
      SELECT k, 'cust-' || (k % 100000), (k % 100000) / 100.0 + 1, 'NEW',
             substr(repeat(md5(k::text), $3 / 32 + 1), 1, $3), timestamptz '2026-01-01 00:00:00+00' + $2 * interval '1 s'
        FROM generate_series($1::bigint * 500 + 1, $1::bigint * 500 + 500) k
      ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, amount = EXCLUDED.amount,
        status = EXCLUDED.status, payload = EXCLUDED.payload, updated_at = EXCLUDED.updated_at$q$, 'TBL', tbl::text)
      USING i, version, payload;
    COMMIT;
  END LOOP;
END $$`;

/** Set cosmos_sink.skip_unchanged and wait until the worker decodes with it (a no-op touch moves the right counter). */
async function setSkipUnchanged(pg, table, on) {
  await pg.setConf({ 'cosmos_sink.skip_unchanged': on ? 'on' : 'off' });
  const counter = on ? 'skipped' : 'upserts';
  const read = async () => num((await pg.query(`SELECT ${counter} AS n FROM cosmos_sink.container_stats WHERE staging_table = $1::regclass`, [table]))[0].n);
  const deadline = Date.now() + 30000;
  for (;;) {
    const before = await read();
    await pg.query(`UPDATE ${table} SET amount = amount WHERE order_id = 1`);
    await waitConfirmed(pg, (await pg.query('SELECT pg_current_wal_lsn() AS l'))[0].l, now(), { timeoutMs: 30000 });
    if (await read() > before) return;
    if (Date.now() > deadline) throw new Error(`worker did not take skip_unchanged = ${on}`);
  }
}

/** One pass of the replay through the proxy: RU, write requests, seconds, counters moved. */
async function replayPass(pg, proxy, table, version) {
  const s0 = (await pg.query('SELECT upserts, skipped FROM cosmos_sink.container_stats WHERE staging_table = $1::regclass', [table]))[0];
  await proxy.reset();
  const t0 = now();
  await pg.query('CALL bench_upsert($1, $2, $3, $4)', [table, REPLAY_ROWS / 500, PAYLOAD_1K, version]);
  const [{ l }] = await pg.query('SELECT pg_current_wal_lsn() AS l');
  const done = await waitConfirmed(pg, l, t0, { timeoutMs: 300000 });
  const ledger = await proxy.ledger();
  const s1 = (await pg.query('SELECT upserts, skipped FROM cosmos_sink.container_stats WHERE staging_table = $1::regclass', [table]))[0];
  return { ru: ledger.ru, writeRequests: ledger.writeRequests, upserts: ledger.upserts, seconds: done.seconds,
    statsUpserts: num(s1.upserts) - num(s0.upserts), statsSkipped: num(s1.skipped) - num(s0.skipped) };
}

/**
 * CPU seconds (and wall seconds) the backend takes to decode a slot's WAL
 * through the plugin (peek, count only) with skip_unchanged on or off: CPU
 * time, because other work on a shared machine moves wall time far more than
 * the comparison does.
 */
async function peekCost(pg, slot, on) {
  const c = await pg.client();
  try {
    const { rows: [{ pid }] } = await c.query('SELECT pg_backend_pid() AS pid');
    const cpu0 = procCpuMs(pid);
    const t0 = now();
    const { rows: [r] } = await c.query(`SELECT count(*) AS n FROM pg_logical_slot_peek_binary_changes('${slot}', NULL, NULL,
      'format', 'binary', 'skip_unchanged', '${on ? 'on' : 'off'}')`);
    return { cpu: (procCpuMs(pid) - cpu0) / 1000, seconds: (now() - t0) / 1000, count: Number(r.n) };
  } finally {
    await c.end().catch(() => {});
  }
}

async function runReplay(emu) {
  const { startFaultProxy } = await import(path.join(here, '..', 'lib', 'fault-proxy.mjs'));
  const proxy = await startFaultProxy({ emulator: emu });
  cleanup.add(() => proxy.stop());
  const pg = await startBenchPg(proxy.endpoint);
  try {
    const table = 'replay_orders';
    await pg.query(ORDERS_DDL(table));
    await pg.query(REPLAY_PROCEDURE);
    await createContainer(emu.endpoint, emu.caFile, 'bench', table, ['/customer_id']);
    await pg.query(`SELECT cosmos_sink.add_route('${table}', 'bench', '${table}', '{customer_id}')`);
    log(`(h) replay of ${REPLAY_ROWS} unchanged rows (10 transactions of 500, ~1 KB rows) through the RU-charging fault proxy`);
    const first = await replayPass(pg, proxy, table, 0);
    const on = await replayPass(pg, proxy, table, 0);
    await setSkipUnchanged(pg, table, false);
    const off = await replayPass(pg, proxy, table, 0);
    await setSkipUnchanged(pg, table, true);
    log(`  first pass ${fmtNum(first.ru)} RU; replay with skip_unchanged on ${fmtNum(on.ru)} RU (${on.statsSkipped} skipped), off ${fmtNum(off.ru)} RU`);

    // the comparison's cost: the same WAL of UPDATEs that each change only their last column,
    // decoded by the plugin with skip_unchanged on (compares, then sends anyway) and off
    await pg.query('SELECT cosmos_sink.pause()');
    await waitState(pg, 'paused');
    await pg.query('CALL bench_upsert($1, $2, $3, $4)', [table, SIZES.compareTxns, PAYLOAD_1K, 0]);
    await pg.query(`SELECT 'init' FROM pg_create_logical_replication_slot('replay_compare', 'cosmos_sink')`);
    await pg.query('CALL bench_upsert($1, $2, $3, $4)', [table, SIZES.compareTxns, PAYLOAD_1K, 1]);
    const rounds = [];
    for (let i = 0; i < COMPARE_ROUNDS; i++) {
      const onFirst = i % 2 === 0;
      const first = await peekCost(pg, 'replay_compare', onFirst);
      const second = await peekCost(pg, 'replay_compare', !onFirst);
      const [a, b] = onFirst ? [first, second] : [second, first];
      rounds.push({ onCpu: a.cpu, offCpu: b.cpu, on: a.seconds, off: b.seconds, records: a.count, recordsOff: b.count });
    }
    const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const changes = SIZES.compareTxns * 500;
    // changes per CPU second of the decoding backend: the least disturbed round of each, and the medians
    const compare = { changes, rounds,
      onRate: changes / Math.min(...rounds.map((r) => r.onCpu)), offRate: changes / Math.min(...rounds.map((r) => r.offCpu)),
      onMedianRate: changes / median(rounds.map((r) => r.onCpu)), offMedianRate: changes / median(rounds.map((r) => r.offCpu)) };
    compare.ratio = compare.onRate / compare.offRate;
    compare.medianRatio = compare.onMedianRate / compare.offMedianRate;
    compare.pairRatios = rounds.map((r) => r.offCpu / r.onCpu);
    await pg.query(`SELECT pg_drop_replication_slot('replay_compare')`);
    log(`  comparison: ${fmtNum(compare.onRate)} changes per CPU second with skip_unchanged on, ${fmtNum(compare.offRate)} off `
      + `(ratio ${compare.ratio.toFixed(3)}; medians ${compare.medianRatio.toFixed(3)})`);
    return { rows: REPLAY_ROWS, first, on, off, compare };
  } finally {
    await pg.cleanup();
    await proxy.stop();
  }
}

// ---------------------------------------------------------------------------
// (g) worker RSS during a 1M-row transaction
// ---------------------------------------------------------------------------

async function runBigTxn(ne) {
  const pg = await startBenchPg(ne.endpoint);
  try {
    const table = 'big_orders';
    await pg.query(ORDERS_DDL(table));
    await pg.query(`SELECT cosmos_sink.add_route('${table}', 'bench', '${table}', '{customer_id}')`);
    await waitConfirmed(pg, (await pg.query('SELECT pg_current_wal_lsn() AS l'))[0].l, now(), { timeoutMs: 60000 });
    const pid = (await status(pg)).worker_pid;
    const base = procStatus(pid);
    let peak = { ...base };
    let samples = 0;
    const timer = setInterval(() => {
      const s = procStatus(pid);
      if (!s) return;
      samples++;
      for (const k of ['VmRSS', 'RssAnon', 'RssFile', 'RssShmem']) if ((s[k] ?? 0) > (peak[k] ?? 0)) peak[k] = s[k];
    }, 100);
    await ne.reset();
    log(`(g) one transaction of ${SIZES.bigRows} rows (~200 B documents), worker pid ${pid}`);
    const t0 = now();
    await pg.query(`INSERT INTO ${table} SELECT g, 'cust-' || (g % 100000), (g % 100000) / 100.0 + 1, 'NEW',
      substr(repeat(md5(g::text), 3), 1, ${PAYLOAD_SMALL}), clock_timestamp() FROM generate_series(1, ${SIZES.bigRows}) g`);
    const committed = now();
    const [{ l1 }] = await pg.query('SELECT pg_current_wal_lsn() AS l1');
    const done = await waitConfirmed(pg, l1, committed, { timeoutMs: 900000 });
    clearInterval(timer);
    const end = procStatus(pid);
    const s = await ne.stats();
    const res = {
      rows: SIZES.bigRows, insertSeconds: (committed - t0) / 1000, drainSeconds: done.seconds,
      rate: SIZES.bigRows / done.seconds, peakRss: peak.VmRSS, peakAnon: peak.RssAnon, peakShmem: peak.RssShmem,
      hwm: end?.VmHWM, baseRss: base?.VmRSS, baseAnon: base?.RssAnon, samples, endpointLive: s.live[`bench/${table}`] ?? 0,
      spilled: (await pg.query(`SELECT COALESCE(sum(spill_bytes), 0) AS b FROM pg_stat_replication_slots`))[0].b,
    };
    log(`  drained in ${done.seconds.toFixed(1)} s after commit (${fmtNum(res.rate)}/s); worker peak RSS ${mb(res.peakRss)} (anonymous ${mb(res.peakAnon)}, shared ${mb(res.peakShmem)}), VmHWM ${mb(res.hwm)}`);
    return res;
  } finally {
    await pg.cleanup();
  }
}
const mb = (b) => (b === null || b === undefined ? 'n/a' : `${(b / 1048576).toFixed(1)} MB`);

// ---------------------------------------------------------------------------
// Machine facts
// ---------------------------------------------------------------------------

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
async function machineFacts() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown';
  const mem = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;
  const pgVersion = sh(path.join(PG_BIN, 'postgres'), ['--version']);
  const pkg = (p) => sh('dpkg-query', ['-W', '-f=${Version}', p]);
  const gitHead = process.env.BENCH_GIT_HEAD || sh('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const srcDirty = sh('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src', 'sql', 'Makefile']);
  return {
    date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
    nproc: os.cpus().length, model, mem, kernel: os.release(), pgVersion,
    postgresPkg: pkg(`postgresql-${PG_MAJOR}`), wal2json: pkg(`postgresql-${PG_MAJOR}-wal2json`), libcurl: pkg('libcurl4') ?? pkg('libcurl4t64'),
    node: process.version, sdk: JSON.parse(readFileSync(path.join(here, '..', 'node_modules', '@azure', 'cosmos', 'package.json'), 'utf8')).version,
    gitHead, srcDirty: Boolean(srcDirty), loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async function main() {
  const started = now();
  const facts = await machineFacts();
  log(`cosmos_sink bench (${QUICK ? 'quick' : 'full'}) on ${facts.nproc} x ${facts.model}, ${facts.pgVersion}; load average ${facts.loadavg}`);
  if (WAIT_QUIET > 0) {
    const deadline = Date.now() + WAIT_QUIET * 1000;
    for (;;) {
      const m = measureCpu();
      await sleep(3000);
      const c = m.end();
      if (c.foreign < 0.15 || Date.now() > deadline) {
        log(`other processes use ${(c.foreign * 100).toFixed(0)}% of a core${c.top.length ? ` (${c.top.join(', ')})` : ''}${c.foreign < 0.15 ? '' : ': starting anyway'}`);
        break;
      }
    }
  }
  scratch = makeScratchDir('cosmos_sink_bench_', { owner: 'postgres' });
  cleanup.add(() => removeDir(scratch));
  prepareBuilds();
  certs = await generateCerts(path.join(scratch, 'certs'));
  keyFile = writeSecretFile(scratch, 'cosmos.key', `${EMULATOR_KEY}\n`);
  const W = workloads();
  const R = { facts, quick: QUICK, sizes: SIZES, args: argv.join(' '), null: {}, emu: {} };

  const ne = await startNullEndpoint({ certs, ranges: 4 });
  cleanup.add(() => ne.stop());

  // null endpoint capacity
  if (ONLY.has('b')) {
    // best of two trials: the load generator shares the 2 cores with the endpoint
    const trials = [];
    for (let i = 0; i < 2; i++) {
      trials.push(await measureCapacity({ endpoint: ne.endpoint, caFile: certs.caFile, seconds: SIZES.capacitySeconds,
        concurrency: 16, opsPerRequest: 100, docBytes: 1000 }));
    }
    R.capacity = trials.reduce((a, b) => (b.opsPerSecond > a.opsPerSecond ? b : a));
    R.capacity.trials = trials.map((t) => t.opsPerSecond);
    log(`null endpoint capacity: ${fmtNum(R.capacity.opsPerSecond)} ops/s (${R.capacity.requestsPerSecond.toFixed(0)} requests/s of 100 ~1 KB ops, ${R.capacity.mbPerSecond.toFixed(0)} MB/s, 16 keep-alive connections)`);
  }

  // (a) (b) (d) into the null endpoint
  if (ONLY.has('a') || ONLY.has('b') || ONLY.has('d')) {
    const pg = await startBenchPg(ne.endpoint, { track_commit_timestamp: 'on' });
    try {
      for (const key of NULL_WORKLOADS) {
        R.null[key] = await runWorkload(pg, W[key], { endpoint: ne.endpoint, kind: 'null endpoint', ne,
          diy: ONLY.has('d') && key !== 'small', diyAlt: key === 'hi', decode: true, perf: key === 'hi',
          builds: BUILDS.length > 0 && BUILD_WORKLOADS.has(key) });
      }
      // (e) latency at a fixed offered rate
      if (ONLY.has('e')) {
        await compileFlink();
        R.latency = {
          cosmos_sink: await runLatency(pg, ne, { endpoint: ne.endpoint, who: 'cosmos_sink' }),
          diy: ONLY.has('d') ? await runLatency(pg, ne, { endpoint: ne.endpoint, who: 'diy' }) : null,
        };
      }
    } finally {
      await pg.cleanup();
    }
  } else if (ONLY.has('e')) {
    const pg = await startBenchPg(ne.endpoint, { track_commit_timestamp: 'on' });
    try {
      await compileFlink();
      R.latency = { cosmos_sink: await runLatency(pg, ne, { endpoint: ne.endpoint, who: 'cosmos_sink' }), diy: null };
    } finally {
      await pg.cleanup();
    }
  }

  // (c) (d) into the emulator, (f) through the fault proxy in front of it
  if (ONLY.has('c') || ONLY.has('f') || ONLY.has('h')) {
    const emu = await startEmulator({ certs });
    cleanup.add(() => emu.stop());
    if (ONLY.has('c')) {
      const pg = await startBenchPg(emu.endpoint);
      try {
        R.emu.hi = await runWorkload(pg, W.emuHi, { endpoint: emu.endpoint, kind: 'emulator', emulator: emu, decode: false, diy: ONLY.has('d') });
        R.emu.lo = await runWorkload(pg, W.emuLo, { endpoint: emu.endpoint, kind: 'emulator', emulator: emu, decode: false, diy: ONLY.has('d') });
      } finally {
        await pg.cleanup();
      }
    }
    if (ONLY.has('f')) R.ru = await runRuBudget(emu);
    if (ONLY.has('f')) R.ruAuto = await runRuAuto(emu);
    if (ONLY.has('h')) R.replay = await runReplay(emu);
    await emu.stop();
  }

  // (g)
  if (ONLY.has('g')) R.big = await runBigTxn(ne);

  R.totalSeconds = (now() - started) / 1000;
  R.facts.loadavgEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  writeFileSync(path.join(scratch, 'results.json'), JSON.stringify(R, null, 1));
  const { report, plot } = await import('./report.mjs');
  await plot(R, PNG);
  writeFileSync(OUT, report(R, { png: path.relative(path.dirname(OUT), PNG) }));
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(R, null, 1));
  log(`wrote ${OUT} and ${PNG} in ${(R.totalSeconds / 60).toFixed(1)} min`);
}

/** Last resort: every process still descending from this one (never the daemonized postmasters: pg.cleanup() stops those). */
async function killDescendants() {
  const t = procTable();
  const kids = new Map();
  for (const [pid, p] of t) { if (!kids.has(p.ppid)) kids.set(p.ppid, []); kids.get(p.ppid).push(pid); }
  const out = [];
  const stack = [...(kids.get(process.pid) ?? [])];
  while (stack.length) { const p = stack.pop(); out.push(p); stack.push(...(kids.get(p) ?? [])); }
  if (!out.length) return;
  for (const p of out) { try { process.kill(p, 'SIGTERM'); } catch { /* gone */ } }
  await sleep(1000);
  for (const p of out) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
}

// --from-json FILE: only re-render the report and plot from a saved run (BENCH_JSON=FILE)
const FROM_JSON = opt('from-json', null);
try {
  if (FROM_JSON) {
    const R = JSON.parse(readFileSync(FROM_JSON, 'utf8'));
    const { report, plot } = await import('./report.mjs');
    await plot(R, PNG);
    writeFileSync(OUT, report(R, { png: path.relative(path.dirname(OUT), PNG) }));
    log(`wrote ${OUT} and ${PNG} from ${FROM_JSON}`);
  } else {
    await main();
  }
  for (const c of children) await killChild(c);
  await cleanup.run();
  await killDescendants();
  process.exit(0);
} catch (e) {
  console.error(e.stack || e);
  for (const c of children) await killChild(c);
  await cleanup.run().catch(() => {});
  await killDescendants();
  process.exit(1);
}
