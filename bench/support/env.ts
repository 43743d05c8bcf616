import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** The repository root, found from this compiled file (build/bench/support/env.js). */
export const repoRoot = new URL('../../../', import.meta.url);

/** The installed version of package `pkg`, read from node_modules. */
export function versionOf(pkg: string): string {
  try {
    const json = JSON.parse(readFileSync(new URL(`node_modules/${pkg}/package.json`, repoRoot), 'utf8')) as { version?: string };
    return (json.version ?? 'unknown').replace(/^v/, ''); // redlock's package.json says "v5.0.0-beta.2"
  } catch {
    return 'not installed';
  }
}

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    return dirty ? `${rev} (lib/ modified)` : rev;
  } catch {
    return 'unknown';
  }
}

export interface Environment {
  readonly node: string;
  readonly v8: string;
  readonly os: string;
  readonly cpu: string;
  readonly cpus: number;
  readonly memoryGiB: number;
  readonly loadAverage: readonly number[];
  readonly exposeGc: boolean;
  readonly packages: Record<string, string>;
  readonly revision: string;
}

export function environment(): Environment {
  const self = JSON.parse(readFileSync(new URL('package.json', repoRoot), 'utf8')) as { name: string; version: string };
  const cpus = os.cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
    exposeGc: typeof globalThis.gc === 'function',
    packages: {
      [self.name]: self.version,
      '@nestjs/common': versionOf('@nestjs/common'),
      '@nestjs/core': versionOf('@nestjs/core'),
      'reflect-metadata': versionOf('reflect-metadata'),
      rxjs: versionOf('rxjs'),
      typescript: versionOf('typescript'),
    },
    revision: gitRevision(),
  };
}
