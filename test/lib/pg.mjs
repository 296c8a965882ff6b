// Throwaway PostgreSQL servers (and streaming standbys) for integration tests: initdb + pg_ctl as
// the postgres OS user in a scratch folder, configured for cosmos_sink
// (wal_level=logical, shared_preload_libraries, output_plugin_libraries),
// with query/psql helpers, restarts, and crash simulation (kill a backend by
// backend_type, kill -9 the whole server).
import { appendFileSync, chmodSync, existsSync, rmSync, readFileSync, readdirSync, statSync, writeFileSync, chownSync, openSync, readSync, closeSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { freePort, isRoot, makeScratchDir, osUser, removeDir, run, sleep, waitFor } from './util.mjs';

export const PG_BIN = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
const PG_USER = 'postgres';
const bin = (n) => path.join(PG_BIN, n);

const live = new Set(); // servers to kill -9 (and remove) if this process exits without cleanup
process.once('exit', () => {
  for (const s of live) {
    try {
      const pid = s.postmasterPid();
      if (pid) for (const p of [pid, ...childrenOf(pid)]) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    } catch { /* ignore */ }
    if (s.ownDir) removeDir(s.dir);
  }
});

let describedGucs = null;
async function serverHasGuc(name) {
  if (!describedGucs) {
    const { stdout } = await run(bin('postgres'), ['--describe-config'], { asUser: PG_USER });
    describedGucs = new Set(stdout.split('\n').map((l) => l.split('\t')[0]));
  }
  return describedGucs.has(name);
}

const quote = (v) => `'${String(v).replace(/'/g, "''")}'`;

/**
 * startPostgres({dir, port, conf, database='app', initdbArgs=[], timeoutMs=60000})
 *   -> PgServer (already started, `database` created)
 * dir: scratch folder (made under /tmp and removed by cleanup() when omitted).
 * port: a free loopback port when omitted. conf: extra postgresql.conf
 * settings {name: value} (value null removes a default), e.g.
 * {'cosmos_sink.endpoint': emu.endpoint, 'cosmos_sink.ca_file': emu.caFile}.
 * Defaults: listen on 127.0.0.1 only, sockets in dir, wal_level=logical,
 * shared_preload_libraries='cosmos_sink', output_plugin_libraries (when this
 * server knows that setting), cosmos_sink.database=database, fsync=off.
 */
export async function startPostgres({ dir, port, conf = {}, database = 'app', initdbArgs = [], timeoutMs = 60000 } = {}) {
  const server = new PgServer({ dir, port: port ?? conf.port ?? await freePort(), conf, database, timeoutMs });
  server.portPicked = (port ?? conf.port) === undefined;
  try {
    await server.init(initdbArgs);
    // Create the database before the first start, so the cosmos_sink worker
    // finds it at once (it would otherwise fail and retry 5 s later)
    if (database !== 'postgres') {
      await run(bin('postgres'), ['--single', '-D', server.dataDir, '-j', 'postgres'],
        { asUser: PG_USER, input: `CREATE DATABASE "${database.replace(/"/g, '""')}"\n;\n`, timeoutMs: 60000 });
    }
    await server.start();
  } catch (e) {
    await server.cleanup().catch(() => {});
    throw e;
  }
  return server;
}

/**
 * startStandby(primary, {slot, conf}) -> PgServer (started, streaming)
 * A streaming standby of primary on a free port: pg_basebackup -R through the
 * physical slot `slot` (created on the primary if missing), then the
 * primary's settings plus hot_standby_feedback, primary_slot_name and, on 17
 * and later, sync_replication_slots (so failover slots are synchronised;
 * primary_conninfo names the database, as slot synchronisation needs).
 */
export async function startStandby(primary, { slot = 'standby1', conf = {} } = {}) {
  const standby = new PgServer({ port: await freePort(), conf: { ...primary.userConf, ...conf }, database: primary.database, timeoutMs: primary.timeoutMs });
  standby.portPicked = true;
  await primary.query(`SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS
    (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, [slot]);
  await run(bin('pg_basebackup'), ['-D', standby.dataDir, '-R', '-X', 'stream', '-S', slot, '--no-sync',
    '-d', `host=${primary.host} port=${primary.port} user=${PG_USER} dbname=${primary.database}`],
  { asUser: PG_USER, timeoutMs: 120000 });
  standby.baseConf = { ...primary.baseConf, unix_socket_directories: standby.dir, port: standby.port };
  const extra = { hot_standby: 'on', hot_standby_feedback: 'on', primary_slot_name: slot };
  if (await serverHasGuc('sync_replication_slots')) extra.sync_replication_slots = 'on';
  Object.assign(standby.userConf, extra, conf);
  standby.writeConf();
  await standby.start();
  return standby;
}

export class PgServer {
  constructor({ dir, port, conf = {}, database = 'app', timeoutMs = 60000 } = {}) {
    this.ownDir = !dir;
    this.dir = dir ?? makeScratchDir('cosmos_pg_', { owner: PG_USER });
    if (dir && isRoot()) { const { uid, gid } = osUser(PG_USER); chownSync(dir, uid, gid); }
    this.dataDir = path.join(this.dir, 'data');
    this.logFile = path.join(this.dir, 'server.log');
    this.host = '127.0.0.1';
    this.port = port;
    this.database = database;
    this.timeoutMs = timeoutMs;
    this.userConf = { ...conf };
  }

  /** postgres://postgres@127.0.0.1:PORT/DB */
  url(database = this.database) { return `postgres://${PG_USER}@${this.host}:${this.port}/${database}`; }
  /** jdbc:postgresql://127.0.0.1:PORT/DB?user=postgres */
  jdbcUrl(database = this.database) { return `jdbc:postgresql://${this.host}:${this.port}/${database}?user=${PG_USER}`; }

  async init(initdbArgs = []) {
    await run(bin('initdb'), ['-D', this.dataDir, '-U', PG_USER, '--auth=trust', '-E', 'UTF8',
      '--locale=C', '--no-sync', ...initdbArgs], { asUser: PG_USER, timeoutMs: this.timeoutMs });
    const base = {
      listen_addresses: '127.0.0.1',
      port: this.port,
      unix_socket_directories: this.dir,
      wal_level: 'logical',
      max_replication_slots: 10,
      max_wal_senders: 10,
      max_worker_processes: 16,
      max_prepared_transactions: 10,
      shared_preload_libraries: 'cosmos_sink',
      'cosmos_sink.database': this.database,
      fsync: 'off',
      log_line_prefix: '%m [%p] %b: ',
      log_min_messages: 'warning',
    };
    if (await serverHasGuc('output_plugin_libraries')) base.output_plugin_libraries = 'pgoutput, test_decoding, cosmos_sink';
    this.baseConf = base;
    appendFileSync(path.join(this.dataDir, 'postgresql.conf'), "\ninclude 'cosmos_sink_test.conf'\n");
    this.writeConf();
  }

  /** Effective settings written to cosmos_sink_test.conf (defaults overlaid by user conf). */
  settings() {
    const all = { ...this.baseConf, port: this.port, ...this.userConf };
    for (const k of Object.keys(all)) if (all[k] === null || all[k] === undefined) delete all[k];
    return all;
  }

  writeConf() {
    const lines = Object.entries(this.settings()).map(([k, v]) => `${k} = ${quote(v)}`);
    const f = path.join(this.dataDir, 'cosmos_sink_test.conf');
    writeFileSync(f, `# written by test/lib/pg.mjs\n${lines.join('\n')}\n`);
    if (isRoot()) { const { uid, gid } = osUser(PG_USER); chownSync(f, uid, gid); }
  }

  /**
   * setConf({name: value|null}, {reload=true}): merge settings, rewrite the
   * file and SELECT pg_reload_conf() (settings needing a restart need restart()).
   */
  async setConf(extra, { reload = true } = {}) {
    Object.assign(this.userConf, extra);
    this.writeConf();
    if (reload && this.postmasterPid()) await this.query('SELECT pg_reload_conf()', [], { database: 'postgres' });
  }

  async start({ timeoutMs = this.timeoutMs } = {}) {
    for (let attempt = 1; ; attempt++) {
      const since = this.logOffset();
      try {
        await this.startOnce({ timeoutMs });
        return;
      } catch (e) {
        // The free port we picked was taken meanwhile: pick another one
        if (!this.portPicked || attempt >= 3 || !/could not (bind|create any TCP\/IP sockets)/.test(this.serverLog({ since }))) throw e;
        this.port = await freePort();
        this.writeConf();
      }
    }
  }

  async startOnce({ timeoutMs }) {
    await run(bin('pg_ctl'), ['-D', this.dataDir, '-l', this.logFile, '-c', ...(process.env.PG_POSTGRES ? ['-p', process.env.PG_POSTGRES] : []), '-w', '-t', String(Math.ceil(timeoutMs / 1000)), 'start'],
      { asUser: PG_USER, timeoutMs: timeoutMs + 5000 })
      .catch((e) => { e.message += `\n--- server log tail:\n${this.serverLog().slice(-4000)}`; throw e; });
    live.add(this);
  }

  /** pg_ctl stop -m fast|smart|immediate (no-op when not running). */
  async stop({ mode = 'fast', timeoutMs = this.timeoutMs } = {}) {
    if (!this.postmasterPid()) { live.delete(this); return; }
    await run(bin('pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', '-t', String(Math.ceil(timeoutMs / 1000)), 'stop'],
      { asUser: PG_USER, timeoutMs: timeoutMs + 5000 });
    live.delete(this);
  }

  async restart({ mode = 'fast' } = {}) {
    await this.stop({ mode });
    await this.start();
  }

  /** pg_ctl promote -w: a standby becomes a primary (waits until it accepts writes). */
  async promote() {
    await run(bin('pg_ctl'), ['-D', this.dataDir, '-w', '-t', String(Math.ceil(this.timeoutMs / 1000)), 'promote'],
      { asUser: PG_USER, timeoutMs: this.timeoutMs + 5000 });
  }

  /** PID of the running postmaster (from postmaster.pid), or null. */
  postmasterPid() {
    const f = path.join(this.dataDir, 'postmaster.pid');
    if (!existsSync(f)) return null;
    const pid = Number(readFileSync(f, 'utf8').split('\n')[0]);
    return pid && pidAlive(pid) ? pid : null;
  }

  /**
   * kill -9 the postmaster and every process it started (like a machine-level
   * crash of the server); resolves once all are gone. start() afterwards runs
   * crash recovery.
   */
  async killPostmaster9() {
    const pid = this.postmasterPid();
    if (!pid) throw new Error('postmaster not running');
    const kids = childrenOf(pid);
    process.kill(pid, 'SIGKILL');
    for (const k of kids) { try { process.kill(k, 'SIGKILL'); } catch { /* gone */ } }
    // processes forked between our listing and the kill: orphans reparented to init
    for (const k of childrenOf(pid)) { try { process.kill(k, 'SIGKILL'); } catch { /* gone */ } }
    await waitFor(() => ![pid, ...kids].some(pidAlive), { timeoutMs: 10000, what: 'killed postmaster and children to exit' });
    // PID 1 on these machines reaps orphans only every second or two; a new
    // postmaster takes a zombie's PID in postmaster.pid for a live server.
    try {
      await waitFor(() => !pidExists(pid), { timeoutMs: 15000, what: `zombie postmaster ${pid} to be reaped` });
    } catch {
      rmSync(path.join(this.dataDir, 'postmaster.pid'), { force: true });
    }
    live.delete(this);
  }

  /** A connected pg.Client (caller must .end() it); errors after a server crash are swallowed. */
  async client({ database = this.database, ...opts } = {}) {
    const c = new pg.Client({ host: this.host, port: this.port, user: PG_USER, database, connectionTimeoutMillis: 10000, ...opts });
    c.on('error', () => { /* server killed under us: the next query fails instead */ });
    await c.connect();
    return c;
  }

  /** query(sql, params=[], {database}) -> rows (a fresh connection per call). */
  async query(sql, params = [], { database = this.database } = {}) {
    const c = await this.client({ database });
    try {
      return (await c.query(sql, params)).rows;
    } finally {
      await c.end().catch(() => {});
    }
  }

  /** psql(sql, {database, args=['-At']}) -> stdout; ON_ERROR_STOP, script fed on stdin. */
  async psql(sql, { database = this.database, args = ['-At'], timeoutMs = 120000 } = {}) {
    const { stdout } = await run(bin('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.host, '-p', String(this.port),
      '-U', PG_USER, '-d', database, ...args, '-f', '-'], { input: sql, timeoutMs });
    return stdout;
  }

  /** PID of the first backend with that pg_stat_activity.backend_type, or null. */
  async backendPid(backendType = 'cosmos_sink worker') {
    const rows = await this.query('SELECT pid FROM pg_stat_activity WHERE backend_type = $1 ORDER BY backend_start LIMIT 1',
      [backendType], { database: 'postgres' });
    return rows.length ? rows[0].pid : null;
  }

  /** Waits until a backend of that type runs (other than notPid) and returns its PID. */
  async waitForBackend(backendType = 'cosmos_sink worker', { timeoutMs = 30000, notPid } = {}) {
    return waitFor(async () => {
      const pid = await this.backendPid(backendType);
      return pid && pid !== notPid ? pid : null;
    }, { timeoutMs, what: `a "${backendType}" backend` });
  }

  /**
   * killWorker(signal='SIGKILL', backendType='cosmos_sink worker', {timeoutMs})
   *   -> the PID it signalled. Waits for such a backend to exist first; for
   * SIGKILL/SIGTERM/SIGQUIT also waits until that process is gone. (A SIGKILLed
   * backend makes the postmaster reinitialize: every backend restarts.)
   */
  async killWorker(signal = 'SIGKILL', backendType = 'cosmos_sink worker', { timeoutMs = 30000 } = {}) {
    const pid = await this.waitForBackend(backendType, { timeoutMs });
    process.kill(pid, signal);
    if (['SIGKILL', 'SIGTERM', 'SIGQUIT', 'SIGINT'].includes(signal)) {
      await waitFor(() => !pidAlive(pid), { timeoutMs, what: `pid ${pid} to exit` });
    }
    return pid;
  }

  /**
   * writePrivateFile(name, content) -> path of a 0600 file owned by the
   * postgres user in the server's folder (for cosmos_sink.key_file: the
   * worker refuses group/other-readable key files).
   */
  writePrivateFile(name, content) {
    const f = path.join(this.dir, name);
    writeFileSync(f, content, { mode: 0o600 });
    chmodSync(f, 0o600);
    if (isRoot()) { const { uid, gid } = osUser(PG_USER); chownSync(f, uid, gid); }
    return f;
  }

  /** Current size of the server log: pass it to serverLog({since}) to read only newer lines. */
  logOffset() { return existsSync(this.logFile) ? statSync(this.logFile).size : 0; }

  /** serverLog({since=0}) -> the server log (stderr of the postmaster and backends). */
  serverLog({ since = 0 } = {}) {
    if (!existsSync(this.logFile)) return '';
    const size = statSync(this.logFile).size;
    if (since >= size) return '';
    const buf = Buffer.alloc(size - since);
    const fd = openSync(this.logFile, 'r');
    try { readSync(fd, buf, 0, buf.length, since); } finally { closeSync(fd); }
    return buf.toString('utf8');
  }

  /** Stop (immediate) and remove the scratch folder if we made it. Never throws. */
  async cleanup() {
    try { await this.stop({ mode: 'immediate', timeoutMs: 20000 }); } catch {
      const pid = this.postmasterPid();
      if (pid) await this.killPostmaster9().catch(() => {});
    }
    live.delete(this);
    if (this.ownDir) removeDir(this.dir);
  }
}

function pidExists(pid) {
  try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; }
}

function pidAlive(pid) {
  try { process.kill(pid, 0); } catch (e) { return e.code === 'EPERM'; }
  // a zombie still "exists": treat it as gone
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

function childrenOf(ppid) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid) out.push(Number(d));
    } catch { /* raced */ }
  }
  return out;
}

export { sleep };
