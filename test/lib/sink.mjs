// The whole cosmos_sink stack for integration tests: the local Cosmos emulator
// over verified TLS, a key file owned by postgres (mode 0600), and a throwaway
// PostgreSQL with the extension configured against the emulator; plus helpers
// to route tables, wait until the worker has caught up, and verify containers.
import { chownSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createContainer, startEmulator, EMULATOR_KEY } from './emulator.mjs';
import { startPostgres } from './pg.mjs';
import { makeScratchDir, osUser, removeDir, sleep } from './util.mjs';
import { verifyContainer } from './verify.mjs';

/** Write a secret file readable only by the postgres OS user. */
export function writeSecretFile(dir, name, text, mode = 0o600) {
  const file = path.join(dir, name);
  writeFileSync(file, text, { mode });
  const { uid, gid } = osUser('postgres');
  chownSync(file, uid, gid);
  return file;
}

/**
 * startSink({conf, emulator}) -> Sink
 * Sink: {emu, pg, keyFile, dir, route(table, container, pkPaths, opts), status(),
 *        waitCaughtUp(opts), verify(table, idColumn, container), stop()}
 */
export async function startSink({ conf = {}, emulatorOptions = {} } = {}) {
  const dir = makeScratchDir('cosmos_sink_stack_', { owner: 'postgres' });
  const emu = await startEmulator(emulatorOptions);
  const keyFile = writeSecretFile(dir, 'cosmos.key', `${EMULATOR_KEY}\n`);
  const pg = await startPostgres({
    conf: {
      'cosmos_sink.endpoint': emu.endpoint,
      'cosmos_sink.ca_file': emu.caFile,
      'cosmos_sink.key_file': keyFile,
      ...conf,
    },
  });
  await pg.query('CREATE EXTENSION cosmos_sink');
  return new Sink(emu, pg, keyFile, dir);
}

export class Sink {
  constructor(emu, pg, keyFile, dir) {
    Object.assign(this, { emu, pg, keyFile, dir });
  }

  /** Create the container (partition key /col per column) and route the table to it. */
  async route(table, container, pkColumns, { database = 'shop', idColumn, kind } = {}) {
    const cols = Array.isArray(pkColumns) ? pkColumns : [pkColumns];
    await createContainer(this.emu.endpoint, this.emu.caFile, database, container,
      cols.map((c) => `/${c}`), kind ?? (cols.length > 1 ? 'MultiHash' : 'Hash'));
    await this.pg.query('SELECT cosmos_sink.add_route($1, $2, $3, $4::text[], $5)',
      [table, database, container, cols, idColumn ?? null]);
  }

  /** Wait until the server accepts queries again (after a crash and its recovery). */
  async waitReady({ timeoutMs = 60000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.pg.query('SELECT 1');
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(200);
      }
    }
  }

  async status() {
    return (await this.pg.query('SELECT * FROM cosmos_sink.status'))[0];
  }

  /**
   * Wait until the slot's confirmed LSN passed everything written so far (or
   * the worker decoded past it with nothing left to send and the slot
   * confirmed within 300 kB of that: while routed tables are idle the slot is
   * confirmed up to the worker's last slot_checkpoint record, which the
   * record itself and up to 256 kB of unrelated WAL may follow) and nothing is
   * in flight: every change committed before the call is in Cosmos.
   */
  async waitCaughtUp({ timeoutMs = 120000 } = {}) {
    const [{ lsn }] = await this.pg.query('SELECT pg_current_wal_lsn() AS lsn');
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      const rows = await this.pg.query(
        `SELECT s.*, s.confirmed_lsn >= $1::pg_lsn OR (w.state = 'idle' AND w.decoded_lsn >= $1::pg_lsn
                AND pg_wal_lsn_diff(w.decoded_lsn, s.confirmed_lsn) < 300000) AS passed
           FROM cosmos_sink.status s, cosmos_sink.worker_status() w`, [lsn]);
      last = rows[0];
      if (last && last.passed && last.in_flight_requests === 0) return last;
      await sleep(200);
    }
    throw new Error(`worker did not catch up to ${lsn} in ${timeoutMs} ms; status: ${JSON.stringify(last)}\n` +
      this.pg.serverLog().split('\n').filter((l) => /cosmos_sink|ERROR|FATAL/.test(l)).slice(-20).join('\n'));
  }

  /** Exact comparison of a container with to_jsonb(row) || id of the table. */
  async verify(table, idColumn, container, { database = 'shop' } = {}) {
    return verifyContainer({ pg: this.pg, table, idColumn, endpoint: this.emu.endpoint,
      caFile: this.emu.caFile, database, container });
  }

  async stop() {
    await this.pg.cleanup();
    await this.emu.stop();
    removeDir(this.dir);
  }
}
