/**
 * What the Redis benchmark counts: the requests this process's ioredis
 * clients send (a wrapper on Redis.prototype.sendCommand), and what Redis
 * itself ran and spent (INFO commandstats and INFO cpu), which includes the
 * commands Lua scripts run inside Redis.
 */
import { Redis } from 'ioredis';

/**
 * Counts the commands every ioredis client of this process sends, by name,
 * whatever created the client (RedisLockStore makes its own): a wrapper on
 * Redis.prototype.sendCommand, counting a command when it is written to a
 * ready connection (a command queued while connecting is counted when the
 * queue is flushed). These are the requests Redis receives from this
 * process; commands a Lua script runs inside Redis are not among them.
 */
export const sentCommands = new Map<string, number>();
let counting = false;

export function countSentCommands(): void {
  if (counting) return;
  counting = true;
  type Send = (this: Redis, command: { name: string }, stream?: unknown) => unknown;
  const proto = Redis.prototype as unknown as { sendCommand: Send };
  const original = proto.sendCommand;
  proto.sendCommand = function (this: Redis, command, stream) {
    if (this.status === 'ready') sentCommands.set(command.name, (sentCommands.get(command.name) ?? 0) + 1);
    return original.call(this, command, stream);
  };
}

/** Commands sent since `before` (a copy of sentCommands), by name. */
export function sentSince(before: ReadonlyMap<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, n] of sentCommands) if (n > (before.get(name) ?? 0)) out[name] = n - (before.get(name) ?? 0);
  return out;
}

/** Redis' own counters: commands by name and the server's CPU time. */
export interface RedisCounters {
  calls: Record<string, number>;
  cpuMs: number;
}

/** A snapshot of Redis' counters, through `admin` (its INFO commands are left out of every count). */
export async function counters(admin: Redis): Promise<RedisCounters> {
  const stats = await admin.info('commandstats');
  const cpu = await admin.info('cpu');
  const calls: Record<string, number> = {};
  for (const match of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[match[1]!] = Number(match[2]);
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  return { calls, cpuMs: (field('used_cpu_sys') + field('used_cpu_user')) * 1_000 };
}

/** Commands of the measurement itself (snapshots, the side connection's PINGs, connecting, closing), left out of every count. */
export const OVERHEAD = new Set(['info', 'ping', 'hello', 'quit', 'client', 'select']);

/** Commands run between two snapshots, by name, leaving out OVERHEAD. */
export function commandsBetween(before: RedisCounters, after: RedisCounters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, calls] of Object.entries(after.calls)) {
    const delta = calls - (before.calls[name] ?? 0);
    if (delta > 0 && !OVERHEAD.has(name)) out[name] = delta;
  }
  return out;
}

/** Sum of a by-command count. */
export const total = (calls: Record<string, number>): number => Object.values(calls).reduce((a, b) => a + b, 0);

