// A scriptable HTTPS reverse proxy between the cosmos_sink worker (or the
// SDK) and the local emulator (@vercel/cosmosdb-server, startEmulator()), so
// tests can make the emulator behave like the real service:
//  - master-key signatures checked exactly as the service does (and AAD tokens
//    when a test expects one): 401 otherwise;
//  - RU charges by document size (ruForOp), x-ms-request-charge, activity ids,
//    and an exact ledger of what was charged and answered;
//  - the service's limits (100 ops, 2 MB request/item, ids <= 1023 bytes
//    without / \ ? #) and real atomic batches (207 + 424s, nothing applied);
//  - seeded, switchable faults: 429 (rate or RU/s budget), 503/408/449/410...,
//    stalls, connection resets, truncated answers, per-op 429s in bulk; and
//    scripted ones: failNext(), setStatusForContainer(), down()/up().
// It runs in a child process (fault-proxy-server.mjs) so that a busy test
// cannot delay it; every method below is async. The pure helpers (signature,
// checker, RU formula, limits) are re-exported from fault-proxy-core.mjs.
//
// Usage:
//   const emu = await startEmulator();
//   const proxy = await startFaultProxy({ emulator: emu });
//   ... cosmos_sink.endpoint = proxy.endpoint, cosmos_sink.ca_file = proxy.caFile
//   await proxy.set({ throttleRate: 0.2, errorRate: { 503: 0.05 }, seed: 7 });
//   const l = await proxy.ledger();   // {requests, ops, upserts, deletes, ru, throttled, byStatus, ...}
//   await proxy.stop();
import { fork } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cosmosClient, EMULATOR_KEY } from './emulator.mjs';

export {
  DEFAULT_LIMITS, MAX_CLOCK_SKEW_MS, aadAuthorization, checkAuthorization, errorBody, formatCharge, jsonBytes,
  masterAuthorization, masterSignature, opId, resourceFromPath, rngFor, roundRu, ruForOp, stringToSign, validateOp,
  EPK_V2_SPACE, epk, epkMultiHash, epkV1, epkV2, evenPkRanges, findPkRange, murmur3x64_128, murmur3x86_32,
  samePartitionKey, splitPkRanges,
} from './fault-proxy-core.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

const live = new Set(); // child processes to kill if this process exits abruptly
process.once('exit', () => {
  for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
});

/**
 * startFaultProxy({emulator | target, port=0, host='127.0.0.1', key=EMULATOR_KEY,
 *                  certFile, keyFile, caFile, logFile, timeoutMs=15000, ...options})
 *   -> FaultProxy (listening)
 * emulator: what startEmulator() returned (its port, CA and localhost
 * certificate are reused: the proxy's certificate is the emulator's, signed by
 * the same CA, so clients keep verifying TLS with caFile). Or target:
 * {port, host='127.0.0.1'} with certFile/keyFile/caFile given explicitly.
 * key: the master key signatures are checked against. logFile: where the
 * proxy writes its own problems (default: emulator dir/fault-proxy.log).
 * Any other field is an option of set() applied at start.
 *
 * FaultProxy: {endpoint 'https://127.0.0.1:PORT/', port, pid, caFile, logFile,
 *   set(options) -> effective options   (merged; see OPTIONS below)
 *   clear()          all faults off (rates, budget, offers, offersMode, failNext queue, container statuses)
 *   failNext(n, {status=503, substatus, retryAfterMs, message, body, kinds} |
 *            {fault:'reset'|'truncate'|'stall', stallMs, kinds})
 *                    the next n batch/bulk requests (kinds: ['batch'] or ['bulk'] only)
 *   setStatusForContainer(db, coll, status|null, {substatus, retryAfterMs, message, body})
 *                    every request to that container answers status until cleared with null
 *   setAadToken(token|null)   accept `type=aad&ver=1.0&sig=<token>` (only that token)
 *   setKey(key|null)          master key to check signatures against
 *   down() / up()    close the listener (ECONNREFUSED) and reset open connections / listen again
 *   ledger()         exact totals (see LEDGER below)
 *   requests({since, kind, limit}) -> [{seq, at (Date.now() on arrival, ms), method, path,
 *                    kind ('batch'|'bulk'|'container'|'pkranges'|'offers'|'other'), agent (the
 *                    User-Agent header, '' if none: the sink sends 'cosmos_sink/<version>'), ops,
 *                    status, ru, window? (the RU window a batch/bulk request counted against: the
 *                    offer key 'db' | 'db/coll', or 'db/coll' under ruPerSecond),
 *                    injected?, reason?, durationMs, acknowledged, pkrangeId?, partitionKey?,
 *                    opStatus?, stalledMs?, authFailure?, failedOp?, rolledBack?, error?,
 *                    routingFailure?, routing?, pkRangesGen?}]
 *                    (the last 100k requests; seq > since)
 *   reset()          zero the ledger and forget the request list (options stay)
 *   config()         the current options
 *   pause()/resume() SIGSTOP/SIGCONT the proxy process (connections hang)
 *   client(options)  an @azure/cosmos client through the proxy (emulator key)
 *   log()            contents of logFile
 *   stop() }
 *
 * OPTIONS (set()):
 *   seed=1            faults are drawn from rngFor(seed, n) for the n-th eligible request
 *                     (arrival order); setting seed restarts n at 0, so a run replays
 *   faultKinds=['batch','bulk']  request kinds random faults apply to (also 'container',
 *                     'pkranges', 'offers', 'other')
 *   throttleRate=0    fraction answered 429, x-ms-substatus 3200, x-ms-retry-after-ms retryAfterMs
 *   retryAfterMs=50
 *   ruPerSecond=0     RU budget per container (= per pkrange: the emulator has one) and 1 s
 *                     wall-clock window: a write that would exceed it (unless it is the first
 *                     of its window) gets 429/3200 with x-ms-retry-after-ms = time to the next window
 *   offers={}         provisioned throughput: {'db/coll': spec} (a container's dedicated offer) or
 *                     {'db': spec} (a database's shared offer), spec {throughput: N} (manual RU/s) or
 *                     {autoscaleMax: N} (autoscale). Offer reads are answered by the proxy (never
 *                     forwarded; kind 'offers', 2.5 RU): GET /offers (feed), GET /offers/{offerRid},
 *                     POST /offers as a query (x-ms-documentdb-isquery: True, application/query+json)
 *                     -> {_rid:'', Offers:[...], _count} + x-ms-item-count. The proxy does not parse
 *                     the SQL: a query selects the offers whose offerResourceId equals one of its string
 *                     parameter values (the SDK's container.readOffer(), a literal, finds none).
 *                     Offers are listed only for resources that exist; ids/rids come from the
 *                     emulator: offerResourceId = the container's (database's) _rid, resource =
 *                     'dbs/<dbRid>/colls/<collRid>/' ('dbs/<dbRid>/'), offer id = 4 characters derived
 *                     from that rid; GET container/database answers carry _self in that shape too.
 *                     Autoscale: offerThroughput = autoscaleMax/10 rounded up to 100, plus
 *                     offerAutopilotSettings {maxThroughput, tier:0, maximumTierThroughput:0, autoUpgrade:false}.
 *                     RU windows follow the offers (batch/bulk, 1 s, mechanics of ruPerSecond): a
 *                     container's dedicated offer is its own window with limit throughput (or
 *                     autoscaleMax); the containers of a database with a shared offer and no dedicated
 *                     one share ONE window; a container without either falls back to ruPerSecond.
 *                     A 429 of an offer window has reason 'offer'.
 *   offersMode='normal'  'serverless': every offer read answers 400 BadRequest "Reading or replacing
 *                     offers is not supported for serverless accounts."; 'forbidden' (an Entra ID
 *                     principal without readMetadata): 403, x-ms-substatus 5301, "Request blocked by Auth ..."
 *   errorRate={}      {status: fraction}, e.g. {503: .05, 408: .02, 449: .02, 410: .01};
 *                     410 carries substatus 1002, 429 3200
 *   stallRate=0, stallMs=5000   hold the request stallMs, then forward it (even if the
 *                     client gave up: applied but unacknowledged)
 *   resetRate=0       destroy the client connection (after reading the request) - not forwarded
 *   truncateRate=0    forward, then send half of the answer and cut the connection
 *                     (applied, unacknowledged)
 *   opThrottleRate=0  bulk only: fraction of ops answered 429/3200 with retryAfterMilliseconds
 *                     inside a 207 (those ops are not forwarded)
 *   checkAuth=true, maxClockSkewMs=900000, clockOffsetMs=0 (the proxy's clock offset)
 *   atomicMode='precheck' | 'rollback' | 'none'   how atomic batches are made atomic (see below)
 *   realPkRanges=true pkranges ids become strings ("0") as the real service sends them
 *   maxOps=100, maxRequestBytes=2 MiB, maxItemBytes=2 MiB, maxIdBytes=1023, invalidIdChars='/\?#'
 *   responseHeaders={} headers set on every answer over the real ones, e.g.
 *                     {'x-ms-request-charge': 'nan'} (a hostile endpoint)
 *   pkRanges=0        N > 0: GET .../pkranges answers N ranges (ids "0".."N-1", 32-hex-digit
 *                     boundaries) splitting the EPK space evenly, for every container (the
 *                     emulator's answer is kept otherwise). The space split is where hash v2 /
 *                     MultiHash keys are: their first 32 hex digits are below 2^126 (the top
 *                     2 bits are cleared), so N=4 gives "", "1000…0", "2000…0", "3000…0", "FF".
 *                     Full hierarchical EPKs (32 hex digits per level) compare correctly with
 *                     these boundaries. (Meant for v2/MultiHash; the emulator itself ignores
 *                     range ids, so SDK queries through the proxy see every doc per range.)
 *   pkRangesSpace='v2' 'full' splits [0, 2^128) instead ("4000…0", "8000…0", "C000…0"): then
 *                     every v2 key is in the first quarter, as a test of the boundaries' use
 *   validateRouting=false  bulk requests with x-ms-documentdb-partitionkeyrangeid: each op's
 *                     EPK is recomputed (epk() below, from its "partitionKey" and the container's
 *                     partitionKey definition, read from the emulator once) and the whole
 *                     request answers 410 / x-ms-substatus 1002 (PartitionKeyRangeGone) if one
 *                     is outside the declared range (ledger.misrouted; record.routing says
 *                     which op, its EPK, the range that holds it). Atomic batches: every op's
 *                     partitionKey must be the x-ms-documentdb-partitionkey header's (same
 *                     values) else 400 / substatus 1001 (ledger.pkMismatch).
 *                     Whenever pkRanges, validateRouting or splitRangesAfter is on, a bulk
 *                     request for a range id the container does not have answers 410/1002
 *                     (ledger.misrouted and ledger.rangeGone).
 *   splitRangesAfter=0 k > 0: the k-th bulk request to a container (after the option was set)
 *                     is the last served by its ranges: then each range splits in two (N -> 2N,
 *                     fresh ids N..3N-1, `parents` = the old id; ledger.splits), as the service
 *                     does in a partition split. Requests for the old ids answer 410/1002 until
 *                     the client re-reads pkranges and re-routes. Requests that arrived before
 *                     the client read the current ranges count in ledger.misroutedStale.
 *   Setting any of these four rebuilds the ranges (same ids) and restarts the split count.
 * Random faults, in priority order per request: reset, 429, errorRate, then stall and/or
 * truncate. Injected 429s and errors are never forwarded (nothing applied).
 *
 * Batch/bulk requests (POST .../docs with x-ms-cosmos-is-batch-request):
 *   whole request: body > maxRequestBytes -> 413; not a JSON array, no ops, > maxOps ops, or
 *   an atomic batch without x-ms-documentdb-partitionkey -> 400 (no per-op array).
 *   per op: invalid/missing id -> 400, resourceBody JSON > maxItemBytes -> 413, a bulk op
 *   without partitionKey -> 400. Bulk: those ops fail alone, the others are forwarded (with
 *   continue-on-error False, ops after the first failure get 424). Atomic: HTTP 207, the
 *   failing op's status and 424 for all others, nothing forwarded.
 *   Atomic batches also fail like the service's when an op fails on the emulator (Delete /
 *   Replace / Read of a missing doc, Create of an existing one, ifMatch): 'precheck' reads the
 *   docs such a batch touches first (plain-Upsert batches skip this) under a per-container lock,
 *   replays it and answers 207 without forwarding; 'rollback' forwards and undoes the ops applied
 *   before the failing one from that snapshot (restored docs get a new _etag/_ts). A
 *   plain-Upsert batch the emulator failed anyway (a 500) cannot be rolled back
 *   (ledger.atomicViolations). Ops without partitionKey get the header's (the emulator needs it).
 *   Answers: 200 if every op succeeded, else 207; per-op requestCharge = ruForOp(op) for 2xx,
 *   0 otherwise; x-ms-request-charge = the sum with 2 decimals; a fresh x-ms-activity-id (or
 *   the request's). Connections to the proxy are kept alive (the emulator's are not).
 *
 * LEDGER (ledger()): requests (all, incl. 401s and faults), writeRequests (batch+bulk),
 *   ops (ops answered with a per-op result, any status), upserts (Create/Upsert/Replace ops
 *   answered 2xx = applied), deletes (Delete 2xx), deletesNotFound (Delete 404), ru (sum of the
 *   x-ms-request-charge of batch/bulk answers = sum of ruForOp of applied ops; 0 for 429s,
 *   errors and proxy rejections; truncated answers count: the service did the work), throttled
 *   (requests answered 429), opsThrottled, failedInjected (requests answered by an injected
 *   fault other than 429 or a bare stall: errors, container statuses, resets, truncations),
 *   unauthorized, stalls, resets, truncated, unacknowledged / opsUnacknowledged /
 *   ruUnacknowledged (answered by the emulator but not delivered completely: truncated, or the
 *   client left during a stall), rollbacks, atomicViolations, upstreamErrors, connections
 *   (TLS connections accepted by the proxy), misrouted (bulk requests answered 410/1002 by the
 *   routing check: op outside the declared range, or a range id gone), rangeGone (those for an
 *   unknown/gone range id), misroutedStale (those sent before the client had read the current
 *   ranges: excusable after a split), pkMismatch (atomic batches answered 400/1001), splits,
 *   byStatus {200:n, 207:n, 429:n, reset:n,
 *   truncated:n, upstreamError:n}, opsByStatus {201:n, 204:n, 424:n, ...}, byKind.
 *   RU sums are rounded to 2 decimals like the header.
 * Emulator transport failures (killed, down(), paused) are mirrored: the client's connection
 * is reset (or hangs) rather than answered.
 */
export async function startFaultProxy({
  emulator, target, port = 0, host = '127.0.0.1', key = EMULATOR_KEY, certFile, keyFile, caFile,
  logFile, timeoutMs = 15000, recordCap, ...options
} = {}) {
  const t = target ?? (emulator ? { port: emulator.port, host: emulator.host ?? '127.0.0.1' } : null);
  if (!t?.port) throw new Error('startFaultProxy: give emulator (from startEmulator) or target {port}');
  certFile ??= emulator?.certFile;
  keyFile ??= emulator?.keyFile;
  caFile ??= emulator?.caFile;
  if (!certFile || !keyFile || !caFile) throw new Error('startFaultProxy: certFile, keyFile and caFile are needed');
  logFile ??= emulator?.dir ? path.join(emulator.dir, 'fault-proxy.log') : undefined;

  const args = { port, host, certFile, keyFile, caFile, target: t, key, config: options, logFile, recordCap };
  const child = fork(path.join(here, 'fault-proxy-server.mjs'), [JSON.stringify(args)], {
    cwd: path.join(here, '..'), stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced',
  });
  live.add(child);
  let pending = new Map();
  let seq = 0;
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => {
    live.delete(child);
    for (const [, p] of pending) p.reject(new Error('fault proxy exited'));
    pending = new Map();
    resolve({ code, sig });
  }));
  child.on('message', (m) => {
    if (m?.reply && pending.has(m.id)) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(`fault proxy: ${m.error}`));
      else p.resolve(m.result);
    }
  });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fault proxy did not start in ${timeoutMs} ms`)), timeoutMs);
    child.on('message', (m) => {
      if (m?.ready) { clearTimeout(timer); resolve(m); }
      if (m?.error && !m.reply) { clearTimeout(timer); reject(new Error(`fault proxy failed: ${m.error}`)); }
    });
    child.once('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`fault proxy exited (${code ?? sig}) at start`)); });
  }).catch(async (e) => { try { child.kill('SIGKILL'); } catch { /* gone */ } await exited; throw e; });

  const ask = (cmd, ...a) => {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error('fault proxy not running'));
    const id = ++seq;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      child.send({ cmd, id, args: a });
    });
  };

  const proxy = {
    endpoint: `https://127.0.0.1:${ready.port}/`, // an IP: never resolved to ::1
    port: ready.port,
    host,
    caFile,
    logFile,
    pid: child.pid,
    set: (o) => ask('set', o),
    clear: () => ask('clear'),
    config: () => ask('config'),
    failNext: (n, fault = {}) => ask('failNext', n, fault),
    setStatusForContainer: (db, coll, status, extra = {}) => ask('setStatusForContainer', db, coll, status, extra),
    setAadToken: (token) => ask('setAadToken', token ?? null),
    setKey: (k) => ask('setKey', k ?? null),
    down: () => ask('down'),
    up: () => ask('up'),
    ledger: () => ask('ledger'),
    async requests(filter = {}) { return (await ask('requests', filter)).records; },
    reset: () => ask('reset'),
    pause() { child.kill('SIGSTOP'); },
    resume() { child.kill('SIGCONT'); },
    client(opts = {}) { return cosmosClient(proxy.endpoint, caFile, opts); },
    log() { return logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''; },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = exited;
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const timer = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
      await done;
      clearTimeout(timer);
    },
  };
  return proxy;
}
