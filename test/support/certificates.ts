import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PEM files for a TLS test server on 127.0.0.1, in a temporary folder. */
export interface TestCertificates {
  /** The CA that signed the server's certificate: what a client must trust. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Removes the folder. */
  remove(): void;
}

/**
 * A throwaway CA and a server certificate it signed for IP 127.0.0.1 (in the
 * subject alternative name, which is what clients check), made with openssl
 * and valid for a day.
 */
export function makeCertificates(name: string): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), `${name}-tls-`));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test-ca');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext');
  return {
    caFile: join(dir, 'ca.crt'),
    certFile: join(dir, 'server.crt'),
    keyFile: join(dir, 'server.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
