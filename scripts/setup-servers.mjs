// Installs the servers the store tests start. Each test launches its own
// server process on a free loopback port, so nothing here is started or
// configured, and a service the package may start (Debian's redis-server on
// port 6379, where the init system allows it) is never used by the tests.
// Run by scripts/test.mjs before the tests; fast and silent when everything is
// present. To add a server, add a line to REQUIRED: the command the tests run
// and the Debian package that provides it.
import { execFileSync, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

/** Command the tests run -> Debian package providing it. */
const REQUIRED = [
  { command: 'redis-server', pkg: 'redis-server' },
  { command: 'redis-cli', pkg: 'redis-tools' },
  { command: 'dbus-daemon', pkg: 'dbus-daemon' },
  { command: 'etcd', pkg: 'etcd-server' },
  { command: 'etcdctl', pkg: 'etcd-client' },
];

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

export function setupServers() {
  const missing = REQUIRED.filter(({ command }) => !has(command));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map(({ pkg }) => pkg))];
  if (process.platform !== 'linux' || !has('apt-get')) {
    throw new Error(
      `The store tests need ${missing.map(({ command }) => command).join(', ')}; ` +
        `install ${packages.join(', ')} (or your system's equivalent) and run the tests again`,
    );
  }
  const asRoot = process.getuid?.() === 0 ? [] : ['sudo'];
  const apt = (...args) => {
    const [command, ...rest] = [...asRoot, 'apt-get', ...args];
    execFileSync(command, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  console.log(`Installing ${packages.join(', ')} for the store tests`);
  apt('update');
  apt('install', '-y', '--no-install-recommends', ...packages);
  const still = missing.filter(({ command }) => !has(command));
  if (still.length > 0) throw new Error(`${still.map(({ command }) => command).join(', ')} still missing after installing ${packages.join(', ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) setupServers();
