// Run as a child process by the D-Bus store tests: one application process
// on a DbusLockStore, driven by JSON commands on stdin, one per line, and
// reporting what happens as JSON events on stdout, one per line. Times
// (`at`) are readings of the host's monotonic clock in milliseconds, which
// every process on the host shares, so the parent can order events of
// several children. Argument: the bus address. See dbus-child.ts for the
// commands and events.
import { createInterface } from 'node:readline';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import type { AcquireRequest, LockStore } from 'nestjs-distributed-lock';

const address = process.argv[2];
if (!address) throw new Error('usage: dbus-lock-child <bus address>');

const store = new DbusLockStore({ address });
/** The store of the `burst` commands: made by the first, with no connection open yet; later ones find its connections open. */
let burstStore: DbusLockStore | undefined;
const owners = new Map<string, string>();
let sequence = 0;

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...event, at: now() })}\n`);
};
const hold = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Command {
  op: 'acquire' | 'release' | 'loop' | 'burst';
  /** burst: names the burst in its `burst` and `bursted` events. */
  key: string;
  wait?: number;
  ttl?: number;
  /** acquire: release by itself after this long; loop: how long each critical section lasts. */
  holdMs?: number;
  rounds?: number;
  /** burst: how many callers ask for each key at once. */
  requests?: { key: string; count: number }[];
}

async function acquire(command: Command, on: LockStore = store): Promise<boolean> {
  const owner = `${process.pid}:${++sequence}`;
  const request: AcquireRequest = {
    key: command.key,
    owner,
    ttl: command.ttl ?? 30_000,
    wait: command.wait ?? 0,
    onLost: (reason) => emit({ op: 'lost', key: command.key, reason }),
  };
  try {
    const result = await on.acquire(request);
    if (!result.acquired) {
      emit({ op: 'busy', key: command.key });
      return false;
    }
    owners.set(command.key, owner);
    emit({ op: 'acquired', key: command.key, token: result.fencingToken });
    return true;
  } catch (error) {
    emit({ op: 'error', key: command.key, message: error instanceof Error ? error.message : String(error) });
    return false;
  }
}

async function release(key: string, on: LockStore = store): Promise<void> {
  const owner = owners.get(key);
  owners.delete(key);
  emit({ op: 'releasing', key });
  const ok = owner !== undefined && (await on.release(key, owner));
  emit({ op: 'released', key, ok });
}

async function run(command: Command): Promise<void> {
  switch (command.op) {
    case 'acquire':
      if ((await acquire(command)) && command.holdMs !== undefined) {
        await hold(command.holdMs);
        await release(command.key);
      }
      return;
    case 'release':
      await release(command.key);
      return;
    case 'loop':
      for (let round = 0; round < (command.rounds ?? 1); round++) {
        if (!(await acquire({ ...command, wait: command.wait ?? 30_000 }))) break;
        emit({ op: 'enter', key: command.key });
        await hold(command.holdMs ?? 1);
        emit({ op: 'exit', key: command.key });
        await release(command.key);
      }
      emit({ op: 'looped', key: command.key });
      return;
    case 'burst': {
      const on = (burstStore ??= new DbusLockStore({ address }));
      emit({ op: 'burst', key: command.key });
      const callers = (command.requests ?? []).flatMap(({ key, count }) =>
        Array.from({ length: count }, async () => {
          if ((await acquire({ op: 'acquire', key, wait: command.wait ?? 30_000, ttl: command.ttl }, on)) && command.holdMs !== undefined) {
            await hold(command.holdMs);
            await release(key, on);
          }
        }),
      );
      await Promise.all(callers);
      emit({ op: 'bursted', key: command.key });
    }
  }
}

// Open the first connection before saying ready, so the tests time the locks and not the handshake.
await acquire({ op: 'acquire', key: `warm-up:${process.pid}` });
await release(`warm-up:${process.pid}`);
emit({ op: 'ready', pid: process.pid });
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => void run(JSON.parse(line) as Command));
lines.on('close', () => void Promise.all([store.close(), burstStore?.close()]));
