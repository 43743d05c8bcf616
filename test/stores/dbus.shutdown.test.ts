import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { lockBusName } from 'nestjs-distributed-lock/dbus';
import { LockChild, hostNow, type ChildEvent } from '../support/dbus-child.js';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { BusProbe } from '../support/dbus-probe.js';
import { spawnReporting, type ReportingChild } from '../support/run-node.js';
import { waitFor } from '../support/wait-for.js';

const appChild = fileURLToPath(new URL('../support/dbus-app-child.js', import.meta.url));

/** When the holder's application starts shutting down, counted from the start of its section. */
const SHUTDOWN_AT = 300;
/** The holder's shutdownTimeout (see dbus-app-child.ts). */
const SHUTDOWN_TIMEOUT = 200;

type Mode = 'close' | 'sigterm' | 'sigterm-listened';

interface Run {
  /** The holder's reports: `enter` and `exit` of its section, and what its shutdown did. */
  holder: Record<string, { at: number } | undefined>;
  /** When the holder's shutdown was asked for, on the host's clock. */
  shutdownAt: number;
  /** How the holder's process ended. */
  exit: { code: number | null; signal: NodeJS.Signals | null };
  /** The waiting process's grant. */
  granted: ChildEvent;
}

describe('DbusLockStore when the application holding a lock shuts down', () => {
  let bus: DbusDaemon;
  let probe: BusProbe;
  let waiter: LockChild;
  const holders: ReportingChild[] = [];

  before(async () => {
    bus = await DbusDaemon.start();
    probe = await BusProbe.connect(bus.address);
    waiter = await LockChild.spawn(bus.address);
  });
  after(async () => {
    for (const { proc } of holders) proc.kill('SIGKILL');
    await waiter.kill();
    probe.close();
    await bus.stop();
  });

  /**
   * Process A (dbus-app-child) enters a section of `sectionMs` on a key,
   * process B waits for the key, and A's application is shut down `SHUTDOWN_AT`
   * ms into the section, by app.close() or SIGTERM.
   */
  const run = async (mode: Mode, sectionMs: number): Promise<Run> => {
    const key = `shutdown:${mode}:${randomUUID()}`;
    const child = spawnReporting(appChild, [bus.address, key, String(sectionMs), mode]);
    holders.push(child);
    const exited = new Promise<Run['exit']>((resolve) => child.proc.once('exit', (code, signal) => resolve({ code, signal })));
    const report = (op: string) => child.events.find((e) => e.op === op) as { at: number } | undefined;
    let entered: { at: number } | undefined;
    await waitFor(() => (entered = report('enter')) !== undefined, 15_000, () => `the holder entered its section; output:\n${child.output()}`);
    if (!entered) throw new Error('unreachable: waitFor saw the section entered');
    const enteredAt = entered.at;
    waiter.send({ op: 'acquire', key: `:${key}`, wait: 20_000 }); // the module's key space: ':' then the key
    await waitFor(async () => (await probe.queue(lockBusName(`:${key}`))).length === 2, 10_000, 'the waiting process queued');
    assert.ok(hostNow() < enteredAt + SHUTDOWN_AT, 'the waiting process queued before the shutdown');
    // The moment the scenario shuts the holder down, not a wait for some state.
    await new Promise((resolve) => setTimeout(resolve, enteredAt + SHUTDOWN_AT - hostNow()));
    const shutdownAt = hostNow();
    if (mode === 'close') child.proc.stdin.end();
    else child.proc.kill('SIGTERM');
    const granted = await waiter.next((e) => e.op === 'acquired' && e.key === `:${key}`, 10_000);
    const exit = await Promise.race([
      exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`the holder did not exit by itself; output:\n${child.output()}`)), 10_000).unref(),
      ),
    ]);
    waiter.send({ op: 'release', key: `:${key}` });
    const holder = Object.fromEntries(['enter', 'exit', 'closing', 'closed', 'sigterm'].map((op) => [op, report(op)]));
    return { holder, shutdownAt, exit, granted };
  };

  it('hands the key on only once a section still running at app.close() ended, and the process exits by itself', async (t) => {
    const { holder, exit, granted } = await run('close', 1_200);
    assert.ok(holder.exit, 'the section ran to its end');
    assert.ok(granted.at >= holder.exit.at, `the waiter entered ${(holder.exit.at - granted.at).toFixed(1)}ms before the section ended`);
    assert.deepEqual(exit, { code: 0, signal: null });
    t.diagnostic(`the waiter entered ${(granted.at - holder.exit.at).toFixed(1)}ms after the section ended`);
  });

  it('hands the key on only once a section still running at SIGTERM ended, when the application listens for SIGTERM too', async (t) => {
    const { holder, exit, granted } = await run('sigterm-listened', 1_200);
    assert.ok(holder.sigterm, 'the application heard SIGTERM');
    assert.ok(holder.exit, 'the section ran to its end: the signal Nest raises again did not end the process');
    assert.ok(granted.at >= holder.exit.at, `the waiter entered ${(holder.exit.at - granted.at).toFixed(1)}ms before the section ended`);
    assert.deepEqual(exit, { code: 0, signal: null });
    t.diagnostic(`the waiter entered ${(granted.at - holder.exit.at).toFixed(1)}ms after the section ended`);
  });

  it('hands the key on when the SIGTERM Nest raises after shutdown ends the process and the section with it, not during the shutdown', async (t) => {
    const { holder, shutdownAt, exit, granted } = await run('sigterm', 1_200);
    assert.equal(holder.exit, undefined, 'the section died with the process');
    assert.deepEqual(exit, { code: null, signal: 'SIGTERM' });
    assert.ok(
      granted.at >= shutdownAt + SHUTDOWN_TIMEOUT,
      `the waiter entered ${(granted.at - shutdownAt).toFixed(1)}ms after SIGTERM, within the ${SHUTDOWN_TIMEOUT}ms the holder's code had to finish`,
    );
    t.diagnostic(`the waiter entered ${(granted.at - shutdownAt).toFixed(1)}ms after SIGTERM`);
  });

  it('hands the key on right after a section that ends within shutdownTimeout releases it, and the process exits by itself', async (t) => {
    const { holder, shutdownAt, exit, granted } = await run('close', SHUTDOWN_AT + SHUTDOWN_TIMEOUT / 2);
    assert.ok(holder.exit, 'the section ran to its end');
    assert.ok(holder.exit.at > shutdownAt, 'the section was still running when shutdown began');
    const after = granted.at - holder.exit.at;
    assert.ok(after >= 0 && after < 100, `the waiter entered ${after.toFixed(1)}ms after the section ended`);
    assert.deepEqual(exit, { code: 0, signal: null });
    t.diagnostic(`the waiter entered ${after.toFixed(1)}ms after the section ended`);
  });
});
