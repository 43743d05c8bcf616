// Builds the package twice from one source: ESM for Nest 12 (and any ESM
// app), CommonJS for Nest 11 apps and Jest, which on Node 20 cannot load an
// ESM-only library. Each half gets its own package.json "type". The build goes
// to a temporary folder and replaces dist/ in one step, so a test run that is
// reading dist/ never sees it half-written.
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';

const staging = `dist.staging-${process.pid}`;
const tsc = (project, outDir) =>
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project, '--outDir', outDir], { stdio: 'inherit' });

try {
  for (const [project, format, type] of [
    ['tsconfig.json', 'esm', 'module'],
    ['tsconfig.cjs.json', 'cjs', 'commonjs'],
  ]) {
    tsc(project, `${staging}/${format}`);
    mkdirSync(`${staging}/${format}`, { recursive: true });
    writeFileSync(`${staging}/${format}/package.json`, JSON.stringify({ type }) + '\n');
  }
  rmSync('dist', { recursive: true, force: true });
  renameSync(staging, 'dist');
} finally {
  rmSync(staging, { recursive: true, force: true });
}
