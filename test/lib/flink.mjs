// Compiles (once per process, into a scratch folder under /tmp removed at
// exit, never the repo) and runs test/flink/FlinkJdbcSink.java, the Flink-JDBC-sink
// stand-in that writes upsert/delete batches into a staging table.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeDir, run } from './util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const FLINK_SOURCE = path.join(here, '..', 'flink', 'FlinkJdbcSink.java');
export const JDBC_JAR = process.env.PG_JDBC_JAR || '/usr/share/java/postgresql.jar';

let compiled = null;
/**
 * compileFlink() -> folder holding FlinkJdbcSink.class. Compiled once per
 * process into a scratch folder under /tmp, removed when the process exits.
 */
export function compileFlink() {
  compiled ??= (async () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'cosmos_sink_flink_'));
    process.once('exit', () => removeDir(out));
    await run('javac', ['-cp', JDBC_JAR, '-d', out, FLINK_SOURCE], { timeoutMs: 120000 });
    return out;
  })();
  compiled.catch(() => { compiled = null; });
  return compiled;
}

const FLAGS = {
  url: 'url', table: 'table', rows: 'rows', keys: 'keys', partitions: 'partitions', batch: 'batch',
  rate: 'rate', deletePct: 'delete-pct', movePct: 'move-pct', replay: 'replay', seed: 'seed',
  payload: 'payload', replicaIdentity: 'replica-identity',
};

/**
 * startFlinkLoad({url, table, rows, keys, partitions, batch, rate, deletePct,
 *   movePct, replay, seed, payload, create, replicaIdentity, timeoutMs=300000,
 *   onProgress(line)}) -> {child, done: Promise<summary>}
 * Starts the client without waiting (so a test can crash things meanwhile).
 * summary = {changes, batches, upserts, deletes, replayed_batches, seconds, stderr}.
 * url is a JDBC URL (PgServer.jdbcUrl()).
 */
export async function startFlinkLoad(opts) {
  const classes = await compileFlink();
  const args = ['-cp', `${classes}:${JDBC_JAR}`, 'FlinkJdbcSink'];
  for (const [k, flag] of Object.entries(FLAGS)) if (opts[k] !== undefined && opts[k] !== null) args.push(`--${flag}`, String(opts[k]));
  if (opts.create) args.push('--create');
  const timeoutMs = opts.timeoutMs ?? 300000;
  const child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => {
    stderr += d;
    if (opts.onProgress) for (const l of String(d).split('\n')) if (l) opts.onProgress(l);
  });
  const done = new Promise((resolve, reject) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); }, timeoutMs);
    child.once('error', (e) => { clearTimeout(t); reject(e); });
    child.once('close', (code, signal) => {
      clearTimeout(t);
      const last = stdout.trim().split('\n').pop();
      if (code !== 0) {
        reject(new Error(`FlinkJdbcSink exited ${code ?? signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs} ms?)` : ''}:\n${stderr.slice(-4000)}`));
        return;
      }
      try {
        resolve({ ...JSON.parse(last), stderr });
      } catch {
        reject(new Error(`FlinkJdbcSink printed no JSON summary: ${stdout.slice(-2000)}\n${stderr.slice(-2000)}`));
      }
    });
  });
  return { child, done };
}

/** runFlinkLoad(opts) -> summary; same options as startFlinkLoad, waits for the end. */
export async function runFlinkLoad(opts) {
  const { done } = await startFlinkLoad(opts);
  return done;
}
