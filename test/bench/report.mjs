// Turns the benchmark's results (bench.mjs) into BENCHMARKS.md and the PNG.
import { renderPlot } from './plot.mjs';

// Published numbers of other systems, on their own hardware (quoted, not measured here)
export const ANCHORS = [
  { label: 'Sequin (16 vCPU)', rate: 50000, p99: 253, note: '50k changes/s with p99 253 ms on 16 vCPU' },
  { label: 'Debezium Server', rate: 20000, note: '~20k changes/s' },
  { label: 'Debezium on MSK', rate: 6000, p99: 499, note: '6k changes/s with p99 499 ms' },
  { label: 'Kafka Connect Cosmos sink', rate: 3000, note: '3k writes/s' },
];

const TARGETS = { ceilingRatio: 0.7, diyRatio: 3, smallRate: 100000, p99: 50, rss: 100 * 1048576 };

const f = (v, d = 0) => (v === null || v === undefined || Number.isNaN(Number(v)) ? 'n/a' : Number(v).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const k = (v) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)}k` : `${Math.round(v)}`);
const pct = (v, d = 0) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : `${(v * 100).toFixed(d)}%`);
const x = (v) => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : `${v.toFixed(2)}×`);
const mb = (b) => (b === null || b === undefined ? 'n/a' : `${(b / 1048576).toFixed(1)} MB`);
const ms = (v) => (v === null || v === undefined ? 'n/a' : `${Number(v) < 10 ? Number(v).toFixed(1) : Math.round(Number(v))} ms`);
const yes = (ok) => (ok === null || ok === undefined ? 'n/a' : ok ? '**yes**' : '**no**');

const ceilRate = (w) => (w?.pgoutput ? w.changes / w.pgoutput.seconds : null);
const csRate = (w) => w?.cs?.rate ?? null;
const diyRate = (w) => w?.diy?.rate ?? null;

/** Rows of the throughput table for one workload. */
function rowsFor(label, w, endpointLabel) {
  if (!w) return [];
  const ceiling = ceilRate(w);
  const diy = diyRate(w);
  const out = [];
  const add = (system, how, seconds, n, notes = '') => {
    const r = n / seconds;
    out.push(`| ${label} | ${system} | ${how} | ${f(n)} | ${seconds.toFixed(2)} | **${k(r)}** | ${ceiling ? x(r / ceiling) : '—'} | ${diy ? x(r / diy) : '—'} | ${notes} |`);
  };
  if (w.pgoutput) add('decode ceiling: pgoutput', 'peek (count only)', w.pgoutput.seconds, w.changes, w.decodeForeignCpu > 0.1 ? `other processes ${pct(w.decodeForeignCpu)} of a core during the peeks` : '');
  if (w.wal2json) add('decode ceiling: wal2json', 'peek (count only)', w.wal2json.seconds, w.wal2json.count, w.wal2json.count !== w.changes ? `counted ${f(w.wal2json.count)}` : '');
  if (w.csPlugin) add('decode: cosmos_sink plugin', 'peek, binary (count only)', w.csPlugin.seconds, w.changes, 'the worker\'s own records');
  if (w.pgoutputStream) add('decode: pgoutput', 'pg_recvlogical → /dev/null', w.pgoutputStream, w.changes);
  if (w.wal2jsonStream) add('decode: wal2json', 'pg_recvlogical → /dev/null', w.wal2jsonStream, w.changes);
  if (w.cs) {
    const s = w.cs.stats;
    const sent = (s.upserts ?? 0) + (s.deletes ?? 0);
    const notes = [`${f(sent)} ops sent${sent < w.changes ? ` (${pct(1 - sent / w.changes)} coalesced)` : ''}`, `${f(s.requests)} requests, ${f(s.avgBatchOps, 1)} ops/request`, `request p50/p99 ${ms(s.p50)}/${ms(s.p99)}`,
      `worker CPU ${pct(w.cs.workerCpu)}`];
    if (w.headStartBytes) notes.push(`${(w.headStartBytes / 1e6).toFixed(1)} MB of the ${f(w.walBytes / 1e6)} MB of WAL decoded before the start (paused, 1MB buffer)`);
    if (w.cs.endpoint) notes.push(`endpoint CPU ${pct(w.cs.endpoint.cpu)}`, `live ids ${w.cs.liveOk ? 'match' : `${f(w.cs.endpoint.live)} ≠ ${f(w.liveRows)}`}`);
    if (w.cs.foreignCpu > 0.1) notes.push(`other processes ${pct(w.cs.foreignCpu)} of a core`);
    add('**cosmos_sink**', `→ ${endpointLabel}`, w.cs.seconds, w.changes, notes.join('; '));
  }
  for (const d of [w.diy, w.diyAlt]) {
    if (!d) continue;
    const notes = [`${f(d.calls)} SDK calls`];
    if (d.endpoint) notes.push(`${f(d.endpoint.requests)} requests`, `endpoint CPU ${pct(d.endpoint.cpu)}`);
    if (!d.complete) notes.push(`only ${f(d.acked)} of ${f(w.changes)} acknowledged`);
    if (d.failed) notes.push(`${f(d.failed)} failed`);
    if (d.foreignCpu > 0.1) notes.push(`other processes ${pct(d.foreignCpu)} of a core`);
    const name = d === w.diy ? `DIY peer (wal2json + SDK \`${d.api}\`, ${d.chunk}/call)` : `DIY variant (SDK \`${d.api}\`, ${d.chunk}/call)`;
    add(name, `→ ${endpointLabel}`, d.seconds, d.acked, notes.join('; '));
  }
  return out;
}

export function report(R, { png }) {
  const F = R.facts;
  const L = [];
  const hi = R.null.hi;
  const lo = R.null.lo;
  const small = R.null.small;
  L.push('# cosmos_sink benchmarks', '');
  L.push(`Written by \`sudo test/bench/run${R.args ? ` ${R.args}` : ''}\` on ${F.date} (${(R.totalSeconds / 60).toFixed(1)} min). `
    + 'Everything below was measured in that one run on one machine; re-run the command to refresh this file and the plot.'
    + (R.quick ? ' **This is the quick smoke version: small workloads, numbers are indicative only.**' : ''));
  L.push('', `![throughput and latency](${png})`, '');

  // ---- targets ----
  L.push('## Targets', '');
  L.push('| target | measured | met |', '|---|---|---|');
  for (const [name, w] of [['high-cardinality pk', hi], ['low-cardinality pk', lo]]) {
    if (!w?.cs) continue;
    const r = csRate(w) / ceilRate(w);
    L.push(`| into the null endpoint ≥ 0.7× the pgoutput decode rate over the same WAL (${name}) | ${k(csRate(w))} vs ${k(ceilRate(w))} changes/s = ${x(r)} | ${yes(r >= TARGETS.ceilingRatio)} |`);
  }
  for (const [name, w] of [['high-cardinality pk', hi], ['low-cardinality pk', lo]]) {
    if (!w?.cs?.workerCpu || !w.pgoutput) continue;
    const worker = (w.cs.workerCpu * w.cs.seconds) / w.changes * 1e6;
    const peek = w.pgoutput.seconds / w.changes * 1e6;
    L.push(`| (the same in CPU time: the worker's CPU per change vs the pgoutput peek's, i.e. the rate if the endpoint had a core of its own; ${name}) `
      + `| ${worker.toFixed(2)} vs ${peek.toFixed(2)} µs per change = ${x(peek / worker)} | ${yes(peek / worker >= TARGETS.ceilingRatio)} |`);
  }
  for (const [name, w] of [['high-cardinality pk', hi], ['low-cardinality pk', lo]]) {
    if (!w?.cs || !w.diy) continue;
    const r = csRate(w) / diyRate(w);
    L.push(`| ≥ 3× the DIY peer into the null endpoint (${name}) | ${k(csRate(w))} vs ${k(diyRate(w))} changes/s = ${x(r)} | ${yes(r >= TARGETS.diyRatio)} |`);
  }
  if (small?.cs) L.push(`| ≥ 100k changes/s on small (~${small.avgDocBytes} B) rows | ${k(csRate(small))} changes/s | ${yes(csRate(small) >= TARGETS.smallRate)} |`);
  const lat = R.latency?.cosmos_sink;
  if (lat) L.push(`| commit→ack p99 ≤ 50 ms at 5k changes/s | p99 ${ms(lat.latency.p99)} (p50 ${ms(lat.latency.p50)}) at ${k(lat.offered)} changes/s offered | ${yes(lat.latency.p99 !== null && lat.latency.p99 <= TARGETS.p99)} |`);
  if (R.big) L.push(`| worker RSS ≤ 100 MB during a ${f(R.big.rows)}-row transaction | peak VmRSS ${mb(R.big.peakRss)} (private ${mb(R.big.peakAnon)}) | ${yes(R.big.peakRss <= TARGETS.rss)} |`);
  L.push('');

  // ---- machine ----
  L.push('## Machine', '');
  L.push(`- ${F.nproc} × ${F.model}, ${(F.mem / 1073741824).toFixed(1)} GiB memory, Linux ${F.kernel}`);
  L.push(`- ${F.pgVersion}, wal2json ${F.wal2json}, libcurl ${F.libcurl}, Node ${F.node}, @azure/cosmos ${F.sdk}`);
  L.push(`- cosmos_sink built from ${F.gitHead}${F.srcDirty ? ' with uncommitted changes in src/' : ''}; fsync=off, throwaway server per phase, everything on 127.0.0.1`);
  L.push(`- load average ${F.loadavg} at the start, ${F.loadavgEnd} at the end (other work on the machine disturbs the numbers)`);
  L.push(`- total run time ${(R.totalSeconds / 60).toFixed(1)} min`, '');

  // ---- workloads ----
  L.push('## Workloads', '');
  L.push('Flink-style batches: each transaction is what Flink\'s JDBC sink commits after its per-key reduce — '
    + '450 `INSERT … ON CONFLICT (order_id) DO UPDATE` of distinct keys, then 50 `DELETE`s of live keys (10%), then `COMMIT` — '
    + 'generated server-side by a procedure (one transaction per loop turn) so the load takes seconds. '
    + 'Before the measured WAL, the rows to be updated or deleted are written (and forwarded): in the measured WAL 40% of the upserts '
    + 'are updates (the table has `REPLICA IDENTITY FULL`, so updates and deletes log the old row too) and 60% inserts, mixed in '
    + 'every transaction, and **no key is touched twice**, so no change can be coalesced away: every system sends one Cosmos '
    + 'operation per change. Table `(order_id bigint PRIMARY KEY, customer_id text, amount numeric(12,2), status text, payload text, '
    + 'updated_at timestamptz)`, document = `to_jsonb(row)` + `id`.', '');
  L.push('| workload | partition key | transactions | changes | WAL | live rows after | document size |', '|---|---|---|---|---|---|---|');
  for (const [w, ep] of [[hi, 'null endpoint'], [lo, 'null endpoint'], [small, 'null endpoint'], [R.emu.hi, 'emulator'], [R.emu.lo, 'emulator']]) {
    if (!w) continue;
    L.push(`| ${w.workload.name} → ${ep} | customer_id, ${f(w.workload.parts)} distinct | ${f(w.workload.txns)} × 500 (after ${f(w.workload.prefill)} rows prefilled) | ${f(w.changes)} | ${f(w.walBytes / 1e6)} MB | ${f(w.liveRows)} | ~${w.avgDocBytes} B |`);
  }
  L.push('', 'The WAL of each workload is generated once, with the worker paused (`cosmos_sink.pause()`) and every slot created '
    + 'beforehand, so the decode ceiling, cosmos_sink and the DIY peer all read exactly the same WAL.', '');

  // ---- results ----
  L.push('## Results', '');
  L.push('| workload | system | how | changes | seconds | changes/s | vs pgoutput peek | vs DIY peer | notes |', '|---|---|---|---|---|---|---|---|---|');
  L.push(...rowsFor('1 KB, high-card pk', hi, 'null endpoint'));
  L.push(...rowsFor('1 KB, low-card pk', lo, 'null endpoint'));
  L.push(...rowsFor('200 B, high-card pk', small, 'null endpoint'));
  L.push(...rowsFor('1 KB, high-card pk', R.emu.hi, 'emulator'));
  L.push(...rowsFor('1 KB, low-card pk', R.emu.lo, 'emulator'));
  L.push('');
  if (R.capacity) {
    const runs = [hi, lo, small].filter((w) => w?.cs?.endpoint && w.cs.endpoint.cpu > 0);
    // what the endpoint could take if it had a whole core: ops/s it served ÷ the share of a core it used
    const implied = runs.map((w) => w.cs.endpoint.ops / w.cs.seconds / w.cs.endpoint.cpu);
    L.push(`**Null endpoint capacity: ${k(R.capacity.opsPerSecond)} ops/s** (best of ${R.capacity.trials?.length ?? 1} trials of ${R.capacity.seconds.toFixed(0)} s: `
      + `${(R.capacity.trials ?? [R.capacity.opsPerSecond]).map(k).join(', ')} ops/s; requests of 100 ~1 KB ops over 16 keep-alive TLS connections, `
      + 'fired by a load generator in the bench\'s own Node process, which shares the 2 cores with the endpoint). '
      + (runs.length ? `During the cosmos_sink runs the endpoint used ${runs.map((w) => pct(w.cs.endpoint.cpu)).join(' / ')} of one core `
        + `while serving ${runs.map((w) => k(w.cs.endpoint.ops / w.cs.seconds)).join(' / ')} ops/s, i.e. about ${implied.map(k).join(' / ')} ops/s per core`
        + (runs.some((w) => w.cs.endpoint.cpu > 0.8)
          ? ' (parsing each body and keeping every live id to check the result): it used most of the second core, so on this 2-core machine '
            + 'the worker and the endpoint together are what the machine can do; with a core of its own the endpoint would not be a limit.'
          : ': it was not the bottleneck.') : ''), '');
  }

  // ---- before/after of each change: other builds over the same WAL ----
  const built = [['1 KB, high-card pk', hi], ['1 KB, low-card pk', lo], ['200 B, high-card pk', small]].filter(([, w]) => w?.builds?.length);
  if (built.length) {
    L.push('## Before and after each change (same WAL, same run)', '');
    L.push('Each build below read the very same WAL from its own copy of the worker\'s slot, one after the other in this run '
      + '(`--builds`: the build is installed, the server restarted with the worker disabled, then enabled and timed until every change '
      + 'is confirmed). × previous is the ratio to the row above, × first to the first build; worker µs/change is the worker\'s CPU time per change '
      + '(what a change costs the worker, whatever else limits the wall-clock rate), × previous (CPU) how much less it costs than the row above.', '');
    L.push('| workload | build | source | seconds | changes/s | × previous | × first | worker CPU | worker µs/change | × previous (CPU) | requests | ops/request | endpoint CPU |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [label, w] of built) {
      w.builds.forEach((b, i) => {
        const prev = i > 0 ? w.builds[i - 1] : null;
        const us = (x) => (x.workerCpu / x.rate) * 1e6;
        L.push(`| ${label} | ${b.label} | \`${b.rev}\` | ${b.seconds.toFixed(2)} | **${k(b.rate)}** | ${prev ? `${(b.rate / prev.rate).toFixed(2)}×` : '—'} `
          + `| ${(b.rate / w.builds[0].rate).toFixed(2)}× | ${pct(b.workerCpu)} | ${us(b).toFixed(2)} | ${prev ? `${(us(prev) / us(b)).toFixed(2)}×` : '—'} `
          + `| ${f(b.requests)} | ${f(b.avgOps, 1)} | ${pct(b.endpointCpu)} |`);
      });
    }
    L.push('');
  }

  // ---- latency ----
  if (R.latency) {
    L.push('## Commit→ack latency at a fixed offered rate', '');
    L.push(`The Flink-style JDBC client (test/flink: batches of 500 reduced per key, 10% deletes, ~1 KB rows) offers ${f(5000)} changes/s for `
      + `${R.sizes.latencySeconds} s into a routed table while the system streams live. A trigger sets \`updated_at = clock_timestamp()\` on every row write; `
      + 'the null endpoint notes when each upserted document arrives (it answers at once, so arrival ≈ ack). **commit→ack** matches each document '
      + '(id + updated_at) with its row version still in the table and takes `arrival − pg_xact_commit_timestamp(xmin)` (track_commit_timestamp = on); '
      + 'versions overwritten or deleted later cannot be matched and are left out. **row write→ack** uses `arrival − updated_at` for every document: '
      + 'it adds the time from the row\'s write to its transaction\'s commit.', '');
    L.push('| system | changes | offered changes/s | commit→ack p50 | p90 | **p99** | max | documents matched | row write→ack p50 / p99 | request p50/p99 (worker view) |',
      '|---|---|---|---|---|---|---|---|---|---|');
    for (const [name, l] of [['**cosmos_sink**', R.latency.cosmos_sink], ['DIY peer', R.latency.diy]]) {
      if (!l) continue;
      L.push(`| ${name} | ${f(l.changes)} | ${k(l.offered)} | ${ms(l.latency.p50)} | ${ms(l.latency.p90)} | **${ms(l.latency.p99)}** | ${ms(l.latency.max)} `
        + `| ${f(l.latency.count)} (${pct(l.matched)}) | ${ms(l.writeToAck?.p50)} / ${ms(l.writeToAck?.p99)} | ${l.stats ? `${ms(l.stats.p50)}/${ms(l.stats.p99)}` : '—'} |`);
    }
    const sp = R.latency.cosmos_sink?.txnSpan;
    if (sp?.p50 !== null && sp?.p50 !== undefined) L.push('', `A transaction of the client takes ${ms(sp.p50)} (median; max ${ms(sp.max)}) from its first row write to its commit.`);
    L.push('');
  }

  // ---- RU budget ----
  L.push('## RU budget (fault proxy)', '');
  if (!R.ru) {
    L.push('Not run.', '');
  } else if (R.ru.skipped) {
    L.push(`Skipped: ${R.ru.skipped}. TODO: re-run once test/lib/fault-proxy.mjs is in the tree.`, '');
  } else {
    const u = R.ru;
    L.push(`The fault proxy (test/lib/fault-proxy.mjs) in front of the emulator charges 10 RU per started KiB of each upsert and 10 per delete, and `
      + `answers 429 to a write that would exceed its budget of ${f(u.budget)} RU/s per container (1 s windows). `
      + `cosmos_sink.max_ru_per_second = ${f(u.client)}. A backlog of ${f(u.changes)} changes (~1 KB rows) drains through it.`, '');
    L.push('| RU/s used | share of the budget used | write requests | throttled (429) | share throttled | seconds | worker\'s RU total |', '|---|---|---|---|---|---|---|');
    L.push(`| ${f(u.ruPerSecond)} | **${pct(u.used, 1)}** | ${f(u.writeRequests)} | ${f(u.throttled)} | **${pct(u.throttledShare, 2)}** | ${u.seconds.toFixed(1)} | ${f(u.workerRu)} |`, '');
  }

  if (R.ruAuto) {
    const a = R.ruAuto;
    L.push(`**max_ru_per_second = 'auto'.** The proxy gives the container an offer of ${f(a.offer)} RU/s (1 s windows shared by every client); `
      + `cosmos_sink.ru_share = ${a.share}, so the budget in force is ${f(a.budget)} RU/s (${a.source}). A second client writes into the same container `
      + `at the rest, ${f(a.offer * (1 - a.share))} RU/s, while a backlog of ${f(a.changes)} changes (~1 KB rows) drains. `
      + 'The sink\'s RU/s are counted from the proxy\'s records of its own requests, a second off each end.', '');
    L.push('| sink RU/s | share used | sink write requests | throttled (429) | share throttled | other client RU/s | other client throttled | seconds |', '|---|---|---|---|---|---|---|---|');
    L.push(`| ${f(a.ruPerSecond)} | **${pct(a.used, 1)}** | ${f(a.writeRequests)} | ${f(a.throttled)} | **${pct(a.throttledShare, 2)}** | ${f(a.other.ruPerSecond)} | ${f(a.other.throttled)} of ${f(a.other.requests)} | ${a.seconds.toFixed(1)} |`, '');
  }

  // ---- replay of unchanged rows ----
  if (R.replay) {
    const r = R.replay;
    const c = r.compare;
    L.push('## Replay of unchanged rows (cosmos_sink.skip_unchanged)', '');
    L.push(`A Flink-style replay after a restore: the same ${f(r.rows)} ~1 KB rows upserted again with the same values, `
      + '10 transactions of 500, through the fault proxy, which charges 10 RU per started KiB of each upsert. '
      + 'Three passes in one run: the first (the rows are new), the replay with the setting on (the default), the replay with it off.', '');
    L.push('| pass | RU charged | write requests | upserts applied | counted skipped | seconds to confirmed |', '|---|---|---|---|---|---|');
    for (const [name, p] of [['first pass', r.first], ['**replay, skip_unchanged on**', r.on], ['replay, skip_unchanged off', r.off]]) {
      L.push(`| ${name} | **${f(p.ru)}** | ${f(p.writeRequests)} | ${f(p.upserts)} | ${f(p.statsSkipped)} | ${p.seconds.toFixed(2)} |`);
    }
    L.push('');
    L.push(`What the comparison costs when it finds a difference: ${f(c.changes)} UPDATEs that each change only their last column `
      + '(the comparison reads every column before it finds the difference, then the document is built anyway), decoded by the plugin '
      + `(\`pg_logical_slot_peek_binary_changes\`, count only) with \`skip_unchanged\` on and off, alternating, ${c.rounds.length} times each. `
      + 'Rates are changes per CPU second of the decoding backend (/proc: on a shared machine wall time moves far more than the comparison does); '
      + 'best round of each, then the medians:', '');
    L.push('| skip_unchanged on | off | **on ÷ off** | medians on / off | on ÷ off (medians) | per-round off÷on CPU ratios |', '|---|---|---|---|---|---|');
    L.push(`| ${k(c.onRate)}/s | ${k(c.offRate)}/s | **${c.ratio.toFixed(3)}** | ${k(c.onMedianRate)}/s / ${k(c.offMedianRate)}/s | ${c.medianRatio.toFixed(3)} | ${c.pairRatios.map((x) => x.toFixed(2)).join(', ')} |`, '');
  }

  // ---- memory ----
  if (R.big) {
    const b = R.big;
    L.push('## Worker memory during a big transaction', '');
    L.push(`One \`INSERT … SELECT generate_series(1, ${f(b.rows)})\` (~200 B documents) committed as a single transaction while the worker streams `
      + `(fresh server, default settings: cosmos_sink.buffer_size 64MB, logical_decoding_work_mem 64MB). /proc/<worker pid>/status sampled every 100 ms (${f(b.samples)} samples).`, '');
    L.push('| peak VmRSS | peak RssAnon (private) | peak RssShmem | VmHWM at the end | RSS before | drain after commit | changes/s | reorder buffer spilled |', '|---|---|---|---|---|---|---|---|');
    L.push(`| **${mb(b.peakRss)}** | ${mb(b.peakAnon)} | ${mb(b.peakShmem)} | ${mb(b.hwm)} | ${mb(b.baseRss)} | ${b.drainSeconds.toFixed(1)} s | ${k(b.rate)} | ${mb(Number(b.spilled))} |`, '');
  }

  // ---- observations ----
  L.push('## What bounds cosmos_sink here', '');
  const obs = [];
  for (const [name, w] of [['high-cardinality', hi], ['low-cardinality', lo], ['small-row', small]]) {
    if (!w?.cs) continue;
    obs.push(`- ${name} run into the null endpoint: the worker process used **${pct(w.cs.workerCpu)} of one core**, the null endpoint ${pct(w.cs.endpoint?.cpu)}, `
      + `the whole machine ${pct(w.cs.machineCpu)} of its ${F.nproc} cores (other processes ${pct(w.cs.foreignCpu)} of a core${w.cs.foreignTop?.length ? `: ${w.cs.foreignTop.join(', ')}` : ''}); ${f(w.cs.stats.requests)} requests of ${f(w.cs.stats.avgBatchOps, 1)} ops `
      + `(${f(w.cs.endpoint?.ops)} ops for ${f(w.changes)} changes${(w.cs.endpoint?.ops ?? w.changes) < w.changes ? ': while the backlog waits, newer changes of a document replace older unsent ones' : ''}).`);
  }
  const p = hi?.cs?.perf;
  if (p && p.symbols?.length) {
    obs.push('', `\`perf record -e cpu-clock -F 499 -g -p <worker pid>\` during the high-cardinality run (share of the worker's samples; `
      + 'hex addresses are functions without symbols, "(deleted)" a library reinstalled while the server ran):', '');
    obs.push('| share | library | symbol |', '|---|---|---|');
    for (const l of p.symbols.slice(0, 15)) {
      const m = /^(\d+\.\d+%)\s+(.+?)\s+\[.\]\s+(.*)$/.exec(l);
      if (m) obs.push(`| ${m[1]} | ${m[2]} | \`${m[3]}\` |`);
      else obs.push(`| | | \`${l}\` |`);
    }
    if (p.dsos?.length) obs.push('', `By library: ${p.dsos.map((d) => { const m = /^(\d+\.\d+%)\s+(.*)$/.exec(d); return m ? `${m[2]} ${m[1]}` : d; }).join(', ')}.`);
  } else {
    obs.push('', 'perf was not available (or --no-perf): no profile.');
  }
  L.push(...obs, '');

  // ---- anchors ----
  L.push('## Published anchors (other systems, their hardware; quoted, not measured here)', '');
  for (const a of ANCHORS) L.push(`- ${a.label}: ${a.note}`);
  L.push('', 'They ran on bigger machines and real networks; the numbers above ran on 2 cores with loopback endpoints. Compare orders of magnitude, not ratios.', '');

  // ---- meanings ----
  L.push('## What each number means', '');
  L.push('- **changes**: row changes of the staging table in the WAL (INSERT/UPDATE/DELETE messages pgoutput decodes), the same N for every system of a workload.');
  L.push('- **decode ceiling (peek)**: `SELECT count(*) FROM pg_logical_slot_peek_binary_changes(...)` (pgoutput, proto 1, a publication on the table) and '
    + '`pg_logical_slot_peek_changes(...)` (wal2json format-version 2, filtered to the table) over the whole WAL of the workload, timed from the client; '
    + 'one backend decoding as fast as it can, output counted and thrown away; best of two runs (on this VM a peek\'s time varies by up to ~30% from run to run). '
    + 'The pg_recvlogical rows stream the same slots through a walsender to /dev/null (two processes on the two cores).');
  L.push('- **cosmos_sink → endpoint**: from `cosmos_sink.resume()` until `cosmos_sink.status.confirmed_lsn` passed the WAL end with no request in flight '
    + '(every change acknowledged and the slot confirmed), polled every 20 ms; changes/s = changes / that time. Requests, ops/request and request p50/p99 '
    + 'are the worker\'s `cosmos_sink.container_stats`; CPU shares are /proc time of the worker and of the endpoint process over the run.');
  L.push('- **DIY peer**: `pg_recvlogical --start -P wal2json -o format-version=2` piped into test/bench/diy-peer.mjs (official @azure/cosmos, '
    + `\`container.items.${R.null.hi?.diy?.api ?? 'bulk'}\`, 16 calls in flight, up to ${R.null.hi?.diy?.chunk ?? 100} changes per call, one op per change, id = order_id as text; `
    + `the "DIY variant" row uses \`${R.null.hi?.diyAlt?.api ?? 'executeBulkOperations'}\` with ${R.null.hi?.diyAlt?.chunk ?? 5000} per call, which waits ≥ 1 s on each call's last partial batch), timed from `
    + 'starting pg_recvlogical until every change was acknowledged by the endpoint. It confirms nothing back to PostgreSQL and keeps no order between calls. '
    + 'Into the emulator it writes its own container (`<table>_diy`), which never held the prefilled rows: its deletes answer 404, counted as acknowledged (as cosmos_sink counts them).');
  L.push('- **null endpoint**: test/bench/null-endpoint.mjs, HTTPS with the harness CA, keep-alive on, 4 partition key ranges; parses each batch/bulk body '
    + 'and answers one result per op at once. **emulator**: @vercel/cosmosdb-server over HTTPS (stores documents, closes every connection).');
  L.push('- **vs pgoutput peek**: changes/s ÷ the pgoutput peek changes/s of the same WAL. **vs DIY peer**: ÷ the DIY peer\'s changes/s on the same workload and endpoint.');
  L.push('');
  L.push('## Running it', '');
  L.push('```sh', `sudo test/bench/run            # full run (${(R.totalSeconds / 60).toFixed(0)} min here; sized for ≤ 20 min on 2 cores); rewrites test/bench/BENCHMARKS.md and test/bench/bench.png`,
    'sudo test/bench/run --quick    # ~3 min smoke version (small workloads)',
    'sudo test/bench/run --only a,b # subsets: a decode, b null endpoint, c emulator, d DIY peer, e latency, f RU budget, g big transaction, h replay of unchanged rows',
    'sudo test/bench/run --wait-quiet 300   # first wait (up to 300 s) until other processes leave the cores alone',
    'sudo test/bench/run --only b --workloads hi --conf cosmos_sink.max_in_flight=64   # quick what-if on one workload (writes BENCHMARKS.md: use --out)',
    'sudo test/bench/run --only b --builds before=HEAD~1,after=HEAD   # the same WAL through other builds (git rev, rev:patch or folder): before/after ratios',
    '```', '');
  return `${L.join('\n')}\n`;
}

export async function plot(R, file) {
  const tp = [];
  const W = [['hi', '1 KB high-card'], ['lo', '1 KB low-card']];
  for (const [key, name] of W) {
    const w = R.null[key];
    if (!w) continue;
    const group = key;
    if (w.pgoutput) tp.push({ group, label: `${name}: pgoutput decode`, value: ceilRate(w), kind: 'ceiling' });
    if (w.wal2json) tp.push({ group, label: `${name}: wal2json decode`, value: w.wal2json.count / w.wal2json.seconds, kind: 'ceiling' });
    if (w.cs) tp.push({ group, label: `${name}: cosmos_sink → null`, value: csRate(w), kind: 'cosmos_sink' });
    if (w.diy) tp.push({ group, label: `${name}: DIY peer → null`, value: diyRate(w), kind: 'diy' });
    const e = R.emu[key];
    if (e?.cs) tp.push({ group, label: `${name}: cosmos_sink → emulator`, value: csRate(e), kind: 'cosmos_sink' });
    if (e?.diy) tp.push({ group, label: `${name}: DIY peer → emulator`, value: diyRate(e), kind: 'diy' });
  }
  const s = R.null.small;
  if (s?.pgoutput) tp.push({ group: 'small', label: '200 B rows: pgoutput decode', value: ceilRate(s), kind: 'ceiling' });
  if (s?.cs) tp.push({ group: 'small', label: '200 B rows: cosmos_sink → null', value: csRate(s), kind: 'cosmos_sink' });
  if (R.capacity) tp.push({ group: 'cap', label: 'null endpoint capacity (ops/s)', value: R.capacity.opsPerSecond, kind: 'endpoint' });
  for (const a of ANCHORS) tp.push({ group: 'anchor', label: a.label, value: a.rate, kind: 'anchor' });
  const lat = [];
  if (R.latency?.cosmos_sink) lat.push({ label: 'cosmos_sink', p50: R.latency.cosmos_sink.latency.p50, p99: R.latency.cosmos_sink.latency.p99, kind: 'cosmos_sink' });
  if (R.latency?.diy) lat.push({ label: 'DIY peer', p50: R.latency.diy.latency.p50, p99: R.latency.diy.latency.p99, kind: 'diy' });
  for (const a of ANCHORS) if (a.p99) lat.push({ label: a.label, p50: null, p99: a.p99, kind: 'anchor' });
  return renderPlot(file, {
    title: `cosmos_sink benchmark${R.quick ? ' (quick)' : ''}`,
    subtitle: `${R.facts.nproc} × ${R.facts.model}, ${R.facts.pgVersion}, ${R.facts.date}; ~1 KB rows, Flink-style batches of 500 with 10% deletes`,
    throughput: tp,
    latency: lat,
    latencyTitle: `Commit→ack at ${k(R.latency?.cosmos_sink?.offered ?? 5000)} changes/s offered, ms (log)`,
  });
}
