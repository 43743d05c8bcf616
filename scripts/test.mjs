// The README's test command: installs the servers the store tests launch
// (when missing), builds the package, compiles the tests, the sample app and
// the benches against it, and runs every *.test.js file with node's test
// runner. Files are listed explicitly because node 20's runner
// would otherwise also run every .js file under a folder named "test".
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setupServers } from './setup-servers.mjs';

const run = (args) => execFileSync(process.execPath, args, { stdio: 'inherit' });

setupServers();
run(['scripts/build.mjs']);
run(['node_modules/typescript/bin/tsc', '-p', 'tsconfig.test.json']);

const only = process.argv.slice(2);
const files = readdirSync('build/test', { recursive: true })
  .map(String)
  .filter((file) => file.endsWith('.test.js'))
  .map((file) => join('build/test', file))
  .filter((file) => only.length === 0 || only.some((part) => file.includes(part)))
  .sort();
if (files.length === 0) throw new Error(`no test file matches ${only.join(' ')}`);

const result = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit' });
process.exitCode = result.status ?? 1;
