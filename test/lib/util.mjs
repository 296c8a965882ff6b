// Small shared helpers for the cosmos_sink test harness: free loopback ports,
// scratch folders (readable by the postgres OS user), running commands as the
// postgres user, polling with a deadline, and cleanup stacks.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync, chownSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** A TCP port free on 127.0.0.1 right now (bind to 0, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function waitForPort(port, { host = '127.0.0.1', timeoutMs = 15000 } = {}) {
  await waitFor(() => new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  }), { timeoutMs, what: `port ${host}:${port}` });
}

/**
 * Makes a fresh scratch folder under the OS temp dir (mode 0755 so the
 * postgres user can traverse it; chowned to that user when owner='postgres').
 */
export function makeScratchDir(prefix = 'cosmos_sink_', { owner } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  chmodSync(dir, 0o755);
  if (owner && isRoot()) {
    const { uid, gid } = osUser(owner);
    chownSync(dir, uid, gid);
  }
  return dir;
}

/** rm -rf, never throwing. */
export function removeDir(dir) {
  if (!dir) return;
  try { rmSync(dir, { recursive: true, force: true, maxRetries: 3 }); } catch { /* ignore */ }
}

const userCache = new Map();
/** {uid, gid} of an OS user, via id(1). */
export function osUser(name) {
  if (!userCache.has(name)) {
    const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    if (uid.status !== 0 || gid.status !== 0) throw new Error(`no OS user ${name}`);
    userCache.set(name, { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) });
  }
  return userCache.get(name);
}

/**
 * Runs a program (no shell) and resolves {stdout, stderr}; rejects with both in
 * the message on a non-zero exit. asUser: run via `runuser -u USER --` when we
 * are root (PostgreSQL refuses to run as root).
 */
export function run(cmd, args = [], { asUser, input, timeoutMs = 120000, env, cwd } = {}) {
  let file = cmd;
  let argv = args;
  if (asUser && isRoot()) {
    file = 'runuser';
    argv = ['-u', asUser, '--', cmd, ...args];
  }
  return new Promise((resolve, reject) => {
    const child = execFile(file, argv, {
      encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024,
      env: env ? { ...process.env, ...env } : process.env, cwd,
    }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}${stdout}`.slice(0, 8000);
        err.stdout = stdout;
        err.stderr = stderr;
        reject(err);
      } else resolve({ stdout, stderr });
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * In a child server process: on SIGTERM, SIGINT or the parent going away,
 * drop open connections, close the server and exit (forced after graceMs).
 */
export function exitOnStop(server, sockets, graceMs = 500) {
  const quit = () => {
    for (const s of sockets) s.destroy();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), graceMs).unref();
  };
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
  process.on('disconnect', quit);
}

/**
 * Polls fn() (sync or async) until it returns a truthy value, which is
 * returned; throws after timeoutMs with `what` and the last error/value.
 */
export async function waitFor(fn, { timeoutMs = 30000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await sleep(intervalMs);
  }
}

/**
 * A LIFO stack of cleanup callbacks; run() executes all of them even when
 * some throw, then throws the first error (if any).
 */
export class Cleanup {
  constructor() { this.fns = []; }
  add(fn) { this.fns.push(fn); return fn; }
  async run() {
    let first;
    while (this.fns.length) {
      const fn = this.fns.pop();
      try { await fn(); } catch (e) { first ??= e; }
    }
    if (first) throw first;
  }
}
