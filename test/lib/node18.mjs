// Node.js 18 support (Debian 12's nodejs is 18.20): @azure/cosmos calls the
// global Web Crypto object (crypto.randomUUID), global only from Node 20;
// Node 18 has the same object at node:crypto's webcrypto. Imported first by
// every module that loads @azure/cosmos. A no-op on Node 20 and later.
import { webcrypto } from 'node:crypto';

if (typeof globalThis.crypto === 'undefined') {
  Object.defineProperty(globalThis, 'crypto', { value: webcrypto, writable: true, configurable: true, enumerable: false });
}
