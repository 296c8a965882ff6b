// Child-process entry point that serves @vercel/cosmosdb-server over HTTPS
// with a generated certificate, so tests can kill/restart the emulator.
// Started by emulator.mjs with child_process.fork(); options come as one JSON
// argument {port, host, certFile, keyFile, keepAlive}. Reports
// {ready:true, port} over IPC once listening. IPC commands:
//   {cmd:'down'}  reset every open and new connection (data is kept)
//   {cmd:'up'}    accept connections again
//   {cmd:'stats'} reply {stats:{requests, byRoute, connections, resets}}
// Exits when told SIGTERM/SIGINT or when the parent goes away.
import { readFileSync } from 'node:fs';
import emulator from '@vercel/cosmosdb-server';
import { exitOnStop } from './util.mjs';

const opts = JSON.parse(process.argv[2] || '{}');
const createHttpsServer = emulator.createHttpsServer || emulator.default;

const server = createHttpsServer({
  cert: readFileSync(opts.certFile),
  key: readFileSync(opts.keyFile),
  minVersion: 'TLSv1.2',
  keepAlive: Boolean(opts.keepAlive),
});

let down = false;
const sockets = new Set();
const stats = { requests: 0, byRoute: {}, connections: 0, resets: 0 };

// Runs before the TLS layer's own listener: in "down" mode answer a TCP RST
server.prependListener('connection', (sock) => {
  if (down) {
    stats.resets++;
    sock.resetAndDestroy();
    return;
  }
  stats.connections++;
  sockets.add(sock);
  sock.once('close', () => sockets.delete(sock));
});
server.on('tlsClientError', () => { /* reset sockets and bad clients: not our concern */ });
server.prependListener('request', (req) => {
  stats.requests++;
  const kind = req.url.replace(/\?.*$/, '')
    .replace(/\/(dbs|colls|docs|udfs|pkranges)\/[^/]+/g, '/$1/{id}');
  const h = req.headers;
  const flavour = /true/i.test(h['x-ms-documentdb-isquery'] || '') || /query\+json/.test(h['content-type'] || '') ? ' (query)'
    : /true/i.test(h['x-ms-documentdb-is-upsert'] || '') ? ' (upsert)'
      : /true/i.test(h['x-ms-cosmos-is-batch-request'] || '') ? ' (batch)' : '';
  const key = `${req.method} ${kind}${flavour}`;
  stats.byRoute[key] = (stats.byRoute[key] || 0) + 1;
});

server.listen(opts.port || 0, opts.host || '127.0.0.1', () => {
  const { port } = server.address();
  if (process.send) process.send({ ready: true, port });
  else console.log(`cosmosdb-server listening on https://127.0.0.1:${port}/`);
});
server.on('error', (err) => {
  console.error(`emulator-server: ${err.stack || err}`);
  if (process.send) process.send({ error: String(err.message || err) });
  process.exit(1);
});

process.on('message', (msg) => {
  if (!msg || typeof msg !== 'object') return;
  if (msg.cmd === 'down') {
    down = true;
    for (const s of sockets) s.resetAndDestroy();
    sockets.clear();
    process.send({ reply: 'down', id: msg.id });
  } else if (msg.cmd === 'up') {
    down = false;
    process.send({ reply: 'up', id: msg.id });
  } else if (msg.cmd === 'stats') {
    process.send({ reply: 'stats', id: msg.id, stats });
  }
});

exitOnStop(server, sockets);
