import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LockLostError, LockService, MemoryLockStore, type Lock } from 'nestjs-distributed-lock';
import { ManualClock } from 'nestjs-distributed-lock/testing';
import { createTestApp } from '../support/app.js';
import { ProbeStore } from '../support/probe-store.js';

/**
 * Random histories of acquire, release, extend, time passing and store
 * outages (renewals failing, as when the holder cannot reach the store),
 * run against the real LockService on the memory store, and compared with a
 * model that says what must be true of them:
 * - a lock is never held past `ttl` after the last moment a renewal could
 *   have been confirmed (safety), and a lock whose renewals never failed stays
 *   held until it is released (liveness);
 * - a key can be taken exactly when no lock on it is held (mutual exclusion);
 * - fencing tokens of a key only grow;
 * - a lock that stops being held other than by release aborts its signal
 *   with LockLostError.
 */
const KEYS = ['a', 'b'] as const;
const CLIENTS = 3;

interface Held {
  lock: Lock;
  /** The latest the lease can end: `ttl` after the last moment a renewal could have been confirmed. */
  latestEnd: number;
  ttl: number;
  /** Whether renewals ever failed while it was held; only then may it be lost. */
  sawOutage: boolean;
}

interface Model {
  now: number;
  outage: boolean;
  held: Map<string, Held>; // `${client}/${key}`
  lastToken: Map<string, number>;
}

interface Real {
  clock: ManualClock;
  store: ProbeStore;
  locks: LockService;
}

const id = (client: number, key: string) => `${client}/${key}`;

function holderOf(model: Model, key: string): string | undefined {
  for (const [name, held] of model.held) if (name.endsWith(`/${key}`) && held.lock.held) return name;
  return undefined;
}

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly client: number,
    readonly key: string,
    readonly ttl: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const name = id(this.client, this.key);
    const expectFree = holderOf(model, this.key) === undefined;
    const lock = await real.locks.tryAcquire(this.key, { ttl: this.ttl });
    assert.equal(lock !== null, expectFree, `${name} acquire: granted iff no lock on ${this.key} is held`);
    if (!lock) return;
    const last = model.lastToken.get(this.key) ?? -Infinity;
    assert.ok(lock.fencingToken > last, `token ${lock.fencingToken} > ${last}`);
    model.lastToken.set(this.key, lock.fencingToken);
    model.held.set(name, { lock, latestEnd: model.now + this.ttl, ttl: this.ttl, sawOutage: model.outage });
  }
  toString = () => `acquire(${this.client}, ${this.key}, ${this.ttl})`;
}

class Release implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly client: number,
    readonly key: string,
  ) {}
  check = (model: Readonly<Model>) => model.held.has(id(this.client, this.key));
  async run(model: Model): Promise<void> {
    const name = id(this.client, this.key);
    const held = model.held.get(name) as Held;
    const wasHeld = held.lock.held;
    assert.equal(await held.lock.release(), wasHeld, `${name} release answers whether it still held the lock`);
    assert.equal(held.lock.held, false);
    model.held.delete(name);
  }
  toString = () => `release(${this.client}, ${this.key})`;
}

class Extend implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly client: number,
    readonly key: string,
    readonly ttl: number,
  ) {}
  check = (model: Readonly<Model>) => model.held.has(id(this.client, this.key));
  async run(model: Model): Promise<void> {
    const held = model.held.get(id(this.client, this.key)) as Held;
    if (!held.lock.held) {
      await assert.rejects(held.lock.extend(this.ttl), LockLostError);
      return;
    }
    if (model.outage) {
      await assert.rejects(held.lock.extend(this.ttl), /connection refused/);
      return;
    }
    await held.lock.extend(this.ttl);
    held.ttl = this.ttl;
    held.latestEnd = model.now + this.ttl;
  }
  toString = () => `extend(${this.client}, ${this.key}, ${this.ttl})`;
}

class Advance implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    for (let left = this.ms; left > 0; ) {
      const step = Math.min(left, 50);
      await real.clock.advance(step);
      model.now += step;
      left -= step;
      for (const [name, held] of model.held) {
        // While renewals work, one may have been confirmed at any moment of the step.
        if (!model.outage) held.latestEnd = model.now + held.ttl;
        if (held.lock.held) {
          assert.ok(model.now < held.latestEnd, `${name} at ${model.now}: still held past the latest end of its lease, ${held.latestEnd}`);
        } else {
          assert.ok(held.sawOutage, `${name} at ${model.now}: lost although its renewals never failed`);
          assert.ok(held.lock.signal.reason instanceof LockLostError, `${name}: a lost lock aborts its signal`);
        }
      }
    }
  }
  toString = () => `advance(${this.ms})`;
}

class Outage implements fc.AsyncCommand<Model, Real> {
  constructor(readonly on: boolean) {}
  check = (model: Readonly<Model>) => model.outage !== this.on;
  async run(model: Model, real: Real): Promise<void> {
    real.store.breakRenewals(this.on);
    model.outage = this.on;
    if (this.on) for (const held of model.held.values()) held.sawOutage = true;
  }
  toString = () => `outage(${this.on})`;
}

const commands = [
  fc.tuple(fc.nat(CLIENTS - 1), fc.constantFrom(...KEYS), fc.constantFrom(300, 1_000, 3_000)).map(([c, k, t]) => new Acquire(c, k, t)),
  fc.tuple(fc.nat(CLIENTS - 1), fc.constantFrom(...KEYS)).map(([c, k]) => new Release(c, k)),
  fc.tuple(fc.nat(CLIENTS - 1), fc.constantFrom(...KEYS), fc.constantFrom(500, 2_000)).map(([c, k, t]) => new Extend(c, k, t)),
  fc.integer({ min: 1, max: 4_000 }).map((ms) => new Advance(ms)),
  fc.boolean().map((on) => new Outage(on)),
];

describe('Lock and MemoryLockStore against a model', () => {
  it('agree on every random history of acquire, release, extend, time and outages', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40 }), async (cmds) => {
        const clock = new ManualClock();
        const store = new ProbeStore(new MemoryLockStore({ clock }));
        // Locks a history leaves held are left to run out at close, without waiting for a release that never comes.
        const app = await createTestApp({ lock: { store, shutdownTimeout: 0 } });
        try {
          const model: Model = { now: 0, outage: false, held: new Map(), lastToken: new Map() };
          await fc.asyncModelRun(() => ({ model, real: { clock, store, locks: app.get(LockService) } }), cmds);
        } finally {
          store.breakRenewals(false);
          await app.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});
