// Generates, with the openssl CLI, a throwaway CA and a localhost server
// certificate signed by it (SAN DNS:localhost, IP:127.0.0.1) so the emulator
// can be served over HTTPS with verification ON: the CA file is what clients
// trust (cosmos_sink.ca_file for the C worker, https.Agent({ca}) for Node).
import { mkdirSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import path from 'node:path';
import { run } from './util.mjs';

/**
 * generateCerts(dir, {days=30, cn='localhost', sans=['DNS:localhost','IP:127.0.0.1']})
 *   -> {caFile, caKeyFile, certFile, keyFile}
 * Files are written into `dir` (created if needed). caFile and certFile are
 * world-readable (the postgres user must read the CA); keys are 0600 except
 * that the folder must be readable by whoever serves the certificate.
 */
export async function generateCerts(dir, { days = 30, cn = 'localhost', sans = ['DNS:localhost', 'IP:127.0.0.1'] } = {}) {
  mkdirSync(dir, { recursive: true });
  const f = (n) => path.join(dir, n);
  const caKeyFile = f('ca.key');
  const caFile = f('ca.pem');
  const keyFile = f('server.key');
  const csrFile = f('server.csr');
  const certFile = f('server.pem');
  const extFile = f('server.ext');

  // CA: self-signed, CA:TRUE, may sign certificates
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256',
    '-days', String(days), '-keyout', caKeyFile, '-out', caFile,
    '-subj', '/CN=cosmos_sink test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectKeyIdentifier=hash']);

  // Server key + CSR, then sign with the CA adding the SANs
  await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-sha256',
    '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${cn}`]);
  writeFileSync(extFile, [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${sans.join(',')}`,
    'authorityKeyIdentifier=keyid,issuer',
    'subjectKeyIdentifier=hash',
    '',
  ].join('\n'));
  await run('openssl', ['x509', '-req', '-in', csrFile, '-CA', caFile, '-CAkey', caKeyFile,
    '-CAcreateserial', '-days', String(days), '-sha256', '-extfile', extFile, '-out', certFile]);

  // Sanity: the chain verifies for the names we promise
  await run('openssl', ['verify', '-CAfile', caFile, '-verify_hostname', 'localhost', certFile]);
  await run('openssl', ['verify', '-CAfile', caFile, '-verify_ip', '127.0.0.1', certFile]);

  chmodSync(caFile, 0o644);
  chmodSync(certFile, 0o644);
  chmodSync(keyFile, 0o600);
  chmodSync(caKeyFile, 0o600);
  for (const tmp of [csrFile]) if (existsSync(tmp)) chmodSync(tmp, 0o600);
  return { caFile, caKeyFile, certFile, keyFile };
}
