// The "runs for both Nest majors" check: packs the library as npm would
// publish it, installs the tarball into two throw-away apps and runs their
// own test runners there:
//
// - fixtures/nest11-cjs-jest: a CommonJS Nest 11 app under Jest + ts-jest,
//   which on Node 20 cannot load an ESM-only library, so it needs dist/cjs;
// - fixtures/nest12-esm-vitest: an ESM Nest 12 app under Vitest 4, on dist/esm.
//
// Each app boots LockModule.forRoot(), injects LockService by constructor type
// (so emitDecoratorMetadata must work in its toolchain) and runs a @WithLock
// method. Run after `npm run build`: it packs the dist/ that is there.
// Needs the npm registry (or a warm npm cache) for the apps' dependencies.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The repository root: this file runs as build/test/consumers/consumers.test.js. */
const root = fileURLToPath(new URL('../../..', import.meta.url));
/** The fixtures are read from the sources, not from build/ (tsc does not copy them). */
const fixtures = join(root, 'test', 'consumers', 'fixtures');

const MINUTE = 60_000;
/** Generous: a cold npm cache downloads a few hundred packages per app. */
const TEST_TIMEOUT = 10 * MINUTE;
/** Longest a single command may run before it is killed. */
const COMMAND_TIMEOUT = 8 * MINUTE;
/** How much of a failed command's output goes into the assertion message. */
const OUTPUT_TAIL = 20_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr, interleaved as they came. */
  output: string;
  ms: number;
}

/**
 * The environment for the commands, without what npm sets for a script (when
 * this suite runs under `npm test`: its package, lifecycle, local prefix and
 * log level) or node:test for its children, so the apps' npm and runners
 * behave as in a fresh shell. The user's npm configuration stays.
 */
function childEnv(): NodeJS.ProcessEnv {
  const dropped = /^(npm_package_|npm_lifecycle_|npm_command$|npm_execpath$|npm_node_execpath$|npm_config_local_prefix$|npm_config_loglevel$|INIT_CWD$|NODE_TEST_CONTEXT$|FORCE_COLOR$)/i;
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!dropped.test(name)) env[name] = value;
  }
  env.NO_COLOR = '1';
  env.CI = 'true';
  return env;
}

function run(command: string, args: string[], cwd: string): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: COMMAND_TIMEOUT,
      // npm is npm.cmd on Windows, which spawn runs only through a shell.
      shell: process.platform === 'win32',
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, output, ms: performance.now() - started }));
  });
}

/** Runs the command and fails the test, with its output, unless it exits 0. */
async function mustRun(t: TestContext, command: string, args: string[], cwd: string): Promise<Run> {
  const line = [command, ...args].join(' ');
  const result = await run(command, args, cwd);
  t.diagnostic(`${line}: ${(result.ms / 1000).toFixed(1)}s`);
  if (result.code !== 0) {
    const how = result.signal ? `was killed by ${result.signal}` : `exited with ${result.code}`;
    // Without colour codes (ts-jest colours its diagnostics whatever NO_COLOR says).
    const output = result.output.replace(/\x1b\[[0-9;]*m/g, '');
    const tail = output.length > OUTPUT_TAIL ? `[…]${output.slice(-OUTPUT_TAIL)}` : output;
    assert.fail(`\`${line}\` in ${cwd} ${how}. Its output:\n${tail}`);
  }
  return result;
}

describe('the packed nestjs-distributed-lock in Nest apps', () => {
  let packDir: string;
  let tarball: string;

  before(async () => {
    packDir = await mkdtemp(join(tmpdir(), 'ndl-pack-'));
    const packed = await run('npm', ['pack', '--pack-destination', packDir], root);
    assert.equal(packed.code, 0, `npm pack failed in ${root}:\n${packed.output}`);
    const tarballs = (await readdir(packDir)).filter((name) => name.endsWith('.tgz'));
    assert.equal(tarballs.length, 1, `npm pack should write one tarball, wrote: ${tarballs.join(', ') || 'none'}`);
    tarball = join(packDir, tarballs[0]);
  });

  after(async () => {
    if (packDir) await rm(packDir, { recursive: true, force: true });
  });

  it('packs only package.json, README.md, LICENSE and the two builds under dist/', async () => {
    const listed = await run('tar', ['-tzf', tarball], root);
    assert.equal(listed.code, 0, `tar -tzf ${tarball} failed:\n${listed.output}`);
    const files = listed.output
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.length > 0 && !line.endsWith('/'))
      .map((line) => line.replace(/^package\//, ''));

    const stray = files.filter((file) => !['package.json', 'README.md', 'LICENSE'].includes(file) && !file.startsWith('dist/'));
    assert.deepEqual(stray, [], `the tarball holds files outside package.json, README.md, LICENSE and dist/`);

    for (const required of [
      'package.json',
      'README.md',
      'LICENSE',
      'dist/esm/package.json',
      'dist/esm/index.js',
      'dist/esm/index.d.ts',
      'dist/esm/testing/index.js',
      'dist/cjs/package.json',
      'dist/cjs/index.js',
      'dist/cjs/index.d.ts',
      'dist/cjs/testing/index.js',
    ]) {
      assert.ok(files.includes(required), `the tarball lacks ${required}; it holds:\n${files.join('\n')}`);
    }
  });

  /**
   * Copies the fixture into a fresh directory, installs its locked
   * dependencies and then the tarball (not saved, so the fixture's lockfile
   * never names the library), and runs its `npm test`.
   */
  async function checkConsumer(t: TestContext, fixture: string): Promise<void> {
    const work = await mkdtemp(join(tmpdir(), `ndl-${fixture}-`));
    try {
      const app = join(work, fixture);
      await cp(join(fixtures, fixture), app, {
        recursive: true,
        // A fixture someone ran in place must not bring its installs or caches along.
        filter: (source) => !['node_modules', 'dist', '.jest-cache'].includes(basename(source)),
      });
      const quiet = ['--no-audit', '--no-fund', '--prefer-offline'];
      await mustRun(t, 'npm', ['ci', ...quiet], app);
      await mustRun(t, 'npm', ['install', '--no-save', ...quiet, tarball], app);
      await mustRun(t, 'npm', ['test'], app);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  it(
    'boots a CommonJS Nest 11 app under Jest from the packed tarball, injects LockService and runs a @WithLock method',
    { timeout: TEST_TIMEOUT },
    (t) => checkConsumer(t, 'nest11-cjs-jest'),
  );

  it(
    'boots an ESM Nest 12 app under Vitest from the packed tarball, injects LockService and runs a @WithLock method',
    { timeout: TEST_TIMEOUT },
    (t) => checkConsumer(t, 'nest12-esm-vitest'),
  );
});
