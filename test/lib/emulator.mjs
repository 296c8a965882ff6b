// Starts/stops the local Cosmos DB test double (@vercel/cosmosdb-server) over
// verified HTTPS in a child process (emulator-server.mjs), so tests can kill,
// restart, reset or freeze it; plus helpers to get an @azure/cosmos client that
// trusts the generated CA and to create containers with the official SDK.
import './node18.mjs'; // before @azure/cosmos: global crypto on Node 18
import { fork } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CosmosClient } from '@azure/cosmos';
import { generateCerts } from './certs.mjs';
import { makeScratchDir, removeDir } from './util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Any base64 key works (the emulator does not check signatures); this is the public emulator key. */
export const EMULATOR_KEY = 'C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==';

const live = new Set(); // child processes to kill if this process exits abruptly
const liveDirs = new Set(); // scratch folders we made, to remove then
process.once('exit', () => {
  for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  for (const d of liveDirs) removeDir(d);
});

/**
 * startEmulator({port=0, dir, certs, host='127.0.0.1', keepAlive=false, timeoutMs=15000})
 *   -> Emulator
 * dir: folder for certificates and emulator.log (a scratch folder is made, and
 * removed by stop(), when omitted); the postgres user must be able to reach
 * dir/certs/ca.pem when the worker is given it as cosmos_sink.ca_file. certs: {caFile, certFile, keyFile} to reuse;
 * generated into dir otherwise. port 0 = any free port (kept across restarts).
 *
 * Emulator: {endpoint 'https://127.0.0.1:PORT/', port, dir, caFile, certFile,
 *   keyFile, logFile, pid,
 *   stop()            graceful stop; removes dir if we created it
 *   kill(sig='SIGKILL') kill the child (all data is lost: it is in memory)
 *   start()           start again on the same port (empty account)
 *   restart()         kill + start
 *   down() / up()     reset every TCP connection / accept again (data kept)
 *   pause() / resume() SIGSTOP / SIGCONT the child: requests hang (data kept)
 *   stats()           {requests, byRoute, connections, resets}
 *   client()          a CosmosClient trusting caFile (call .dispose() after use)
 *   log()             contents of emulator.log }
 */
export async function startEmulator({ port = 0, dir, certs, host = '127.0.0.1', keepAlive = false, timeoutMs = 15000 } = {}) {
  const ownDir = !dir;
  dir ??= makeScratchDir('cosmos_emulator_');
  if (ownDir) liveDirs.add(dir);
  const c = certs ?? await generateCerts(path.join(dir, 'certs'));
  const logFile = path.join(dir, 'emulator.log');
  let child = null;
  let exited = null;
  let pending = new Map();
  let askSeq = 0;

  const emu = {
    endpoint: null, port, dir, host, logFile,
    caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile,
    get pid() { return child?.pid; },

    async start() {
      if (child) throw new Error('emulator already running');
      const fd = openSync(logFile, 'a');
      const opts = { port: emu.port, host, certFile: c.certFile, keyFile: c.keyFile, keepAlive };
      try {
        child = fork(path.join(here, 'emulator-server.mjs'), [JSON.stringify(opts)], {
          cwd: path.join(here, '..'), stdio: ['ignore', fd, fd, 'ipc'],
        });
      } finally {
        closeSync(fd);
      }
      live.add(child);
      const me = child;
      exited = new Promise((resolve) => me.once('exit', (code, sig) => {
        live.delete(me);
        if (child === me) child = null;
        for (const [, p] of pending) p.reject(new Error('emulator exited'));
        pending = new Map();
        resolve({ code, sig });
      }));
      me.on('message', (m) => {
        if (m?.reply && pending.has(m.id)) {
          const p = pending.get(m.id);
          pending.delete(m.id);
          p.resolve(m);
        }
      });
      const ready = await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`emulator did not start in ${timeoutMs} ms:\n${emu.log()}`)), timeoutMs);
        me.on('message', (m) => {
          if (m?.ready) { clearTimeout(t); resolve(m); }
          if (m?.error) { clearTimeout(t); reject(new Error(`emulator failed: ${m.error}`)); }
        });
        me.once('exit', (code, sig) => { clearTimeout(t); reject(new Error(`emulator exited (${code ?? sig}) at start:\n${emu.log()}`)); });
      }).catch(async (e) => { try { me.kill('SIGKILL'); } catch { /* gone */ } await exited; throw e; });
      emu.port = ready.port;
      // an IP, not localhost: Node 18 would try only ::1 first where /etc/hosts maps localhost to both
      emu.endpoint = `https://127.0.0.1:${ready.port}/`;
      return emu;
    },

    async kill(signal = 'SIGKILL') {
      if (!child) return;
      const done = exited;
      child.kill(signal);
      await done;
    },

    async stop() {
      if (child) {
        const done = exited;
        const me = child;
        me.kill('SIGTERM');
        me.kill('SIGCONT'); // in case pause() froze it
        const t = setTimeout(() => { try { me.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
        await done;
        clearTimeout(t);
      }
      if (ownDir) { removeDir(dir); liveDirs.delete(dir); }
    },

    async restart() { await emu.kill('SIGKILL'); return emu.start(); },

    pause() { child?.kill('SIGSTOP'); },
    resume() { child?.kill('SIGCONT'); },
    down() { return ask('down'); },
    up() { return ask('up'); },
    async stats() { return (await ask('stats')).stats; },

    client(options = {}) { return cosmosClient(emu.endpoint, emu.caFile, options); },
    log() { return existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''; },
  };

  function ask(cmd) {
    if (!child) return Promise.reject(new Error('emulator not running'));
    const id = ++askSeq;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      child.send({ cmd, id });
    });
  }

  try {
    await emu.start();
  } catch (e) {
    if (ownDir) { removeDir(dir); liveDirs.delete(dir); }
    throw e;
  }
  return emu;
}

/**
 * cosmosClient(endpoint, caFile, {key=EMULATOR_KEY, ...CosmosClientOptions})
 * An official SDK client that verifies TLS against caFile (never disables
 * verification). Endpoint discovery is off: the emulator advertises
 * https://127.0.0.1:PORT as its region endpoint. Call client.dispose() when done.
 */
export function cosmosClient(endpoint, caFile, { key = EMULATOR_KEY, connectionPolicy = {}, ...rest } = {}) {
  const agent = new https.Agent({ ca: readFileSync(caFile), keepAlive: false });
  return new CosmosClient({
    endpoint, key, agent,
    ...rest,
    // the emulator's queries scan every document: reading a big container is slow
    connectionPolicy: { enableEndpointDiscovery: false, enableBackgroundEndpointRefreshing: false,
      requestTimeout: 600000, ...connectionPolicy },
  });
}

/**
 * createContainer(endpoint, caFile, db, container, partitionKeyPaths, kind='Hash')
 *   -> the container definition as read back ({id, partitionKey:{paths,kind,version}, ...})
 * Creates the database and the container if missing (idempotent).
 * partitionKeyPaths: '/customer_id' or ['/a','/b'] (use kind 'MultiHash' for
 * hierarchical keys; the emulator only honours the first path).
 */
export async function createContainer(endpoint, caFile, db, container, partitionKeyPaths, kind = 'Hash') {
  const paths = Array.isArray(partitionKeyPaths) ? partitionKeyPaths : [partitionKeyPaths];
  const client = cosmosClient(endpoint, caFile);
  try {
    const { database } = await client.databases.createIfNotExists({ id: db });
    const { container: ctr } = await database.containers.createIfNotExists({
      id: container, partitionKey: { paths, kind, version: 2 },
    });
    const { resource } = await ctr.read();
    return resource;
  } finally {
    client.dispose();
  }
}

/**
 * upsertDocuments(endpoint, caFile, db, container, docs, {concurrency=16})
 *   -> number upserted. Plain SDK upserts, a few at a time (seeding or
 * standing in for the worker); the SDK derives each partition key from the doc.
 */
export async function upsertDocuments(endpoint, caFile, db, container, docs, { concurrency = 16 } = {}) {
  const client = cosmosClient(endpoint, caFile);
  try {
    const items = client.database(db).container(container).items;
    let next = 0;
    const worker = async () => {
      while (next < docs.length) {
        const doc = docs[next++];
        await items.upsert(doc);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, docs.length) }, worker));
    return docs.length;
  } finally {
    client.dispose();
  }
}
