/**
 * The ways of locking with etcd that the etcd benchmark compares, behind one
 * small interface: `acquire` resolves once the lock is held (waiting for as
 * long as it takes), and the handle releases it.
 *
 * - `etcd3 Lock`: the etcd3 package's own `client.lock(key)`: a lease per
 *   lock (granted, kept alive, revoked), and no waiting (it throws when the
 *   key is held), so it only runs uncontended.
 * - `raw floor`: the least any session-lease lock can do: one lease granted
 *   up front, then a put-if-absent transaction and a delete per pair.
 * - `everyone watches one key`: put-if-absent on the lock key; when it is
 *   held, watch that key from the revision of the failed attempt and try
 *   again on its deletion. Every waiter wakes on every release.
 * - `FIFO recipe`: etcd's own concurrency recipe (clientv3 `concurrency.Mutex`)
 *   on etcd3: a key per waiter under the lock's prefix, then in a loop read
 *   the key just before one's own and watch it, from the revision of that
 *   read, until it is deleted.
 * - `EtcdLockStore`: this library, through `LockService` of a real Nest
 *   application per worker.
 */
import { randomUUID } from 'node:crypto';
import { Etcd3, type Watcher } from 'etcd3';
import type { INestApplicationContext } from '@nestjs/common';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';

export interface Held {
  release(): Promise<unknown>;
}

/** One worker's way into the lock. */
export interface Taker {
  /** Resolves once the lock is held; `wait` false for a single try where the implementation distinguishes (uncontended runs). */
  acquire(key: string, wait: boolean): Promise<Held>;
  close(): Promise<void>;
}

export type ContenderId = 'etcd3-lock' | 'raw' | 'herd' | 'fifo-recipe' | 'store';

/** Short names for chart legends. */
export const SHORT: Record<ContenderId, string> = {
  'etcd3-lock': 'etcd3 Lock',
  raw: 'raw floor',
  herd: 'one-key watch',
  'fifo-recipe': 'FIFO recipe',
  store: 'EtcdLockStore',
};

export const LABELS: Record<ContenderId, string> = {
  'etcd3-lock': "etcd3's Lock",
  raw: 'raw session-lease floor',
  herd: 'everyone watches one key',
  'fifo-recipe': 'FIFO recipe (etcd concurrency.Mutex)',
  store: 'EtcdLockStore via LockService',
};

const EMPTY = Buffer.alloc(0);
/** The session lease of the hand-written contenders, kept alive by etcd3 for as long as the taker lives (a run on a slow machine outlasts any fixed TTL). */
const LEASE_TTL_S = 60;

/** A taker for contender `id` on etcd at `hosts`, with its own client (its own connection), like a process of its own. */
export async function createTaker(id: ContenderId, hosts: string[]): Promise<Taker> {
  switch (id) {
    case 'etcd3-lock':
      return etcd3Lock(hosts);
    case 'raw':
      return raw(hosts);
    case 'herd':
      return herd(hosts);
    case 'fifo-recipe':
      return fifoRecipe(hosts);
    case 'store':
      return store(hosts);
  }
}

function etcd3Lock(hosts: string[]): Taker {
  const client = new Etcd3({ hosts });
  return {
    async acquire(key) {
      return client.lock(key).ttl(LEASE_TTL_S).acquire();
    },
    async close() {
      client.close();
    },
  };
}

async function raw(hosts: string[]): Promise<Taker> {
  const client = new Etcd3({ hosts });
  const session = client.lease(LEASE_TTL_S);
  const lease = await session.grant();
  return {
    async acquire(name) {
      const key = Buffer.from(name);
      const reply = await client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: EMPTY, lease } }],
      });
      if (!reply.succeeded) throw new Error(`raw floor: ${name} is held (the raw floor runs uncontended only)`);
      return { release: () => client.kv.deleteRange({ key }) };
    },
    async close() {
      await session.revoke();
      client.close();
    },
  };
}

async function herd(hosts: string[]): Promise<Taker> {
  const client = new Etcd3({ hosts });
  const session = client.lease(LEASE_TTL_S);
  const lease = await session.grant();
  return {
    async acquire(name) {
      const key = Buffer.from(name);
      for (;;) {
        const reply = await client.kv.txn({
          compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key, value: EMPTY, lease } }],
        });
        if (reply.succeeded) return { release: () => client.kv.deleteRange({ key }) };
        await deleted(client, key, Number(reply.header.revision) + 1);
      }
    },
    async close() {
      await session.revoke();
      client.close();
    },
  };
}

async function fifoRecipe(hosts: string[]): Promise<Taker> {
  const client = new Etcd3({ hosts });
  const session = client.lease(LEASE_TTL_S);
  const lease = await session.grant();
  return {
    async acquire(name) {
      const prefix = Buffer.from(`${name}/`);
      const end = Buffer.from(`${name}0`);
      const key = Buffer.from(`${name}/${randomUUID()}`);
      const reply = await client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: EMPTY, lease } }],
      });
      const mine = Number(reply.header.revision);
      for (;;) {
        const before = await client.kv.range({
          key: prefix,
          range_end: end,
          max_create_revision: mine - 1,
          sort_target: 'Create',
          sort_order: 'Descend',
          limit: 1,
          keys_only: true,
        });
        const predecessor = before.kvs[0];
        if (!predecessor) return { release: () => client.kv.deleteRange({ key }) };
        await deleted(client, predecessor.key, Number(before.header.revision) + 1);
      }
    },
    async close() {
      await session.revoke();
      client.close();
    },
  };
}

/** Resolves when `key` is deleted at or after `revision`, through etcd3's watch API. */
async function deleted(client: Etcd3, key: Buffer, revision: number): Promise<void> {
  const watcher: Watcher = await client.watch().key(key).startRevision(String(revision)).create();
  await new Promise<void>((resolve) => watcher.once('delete', () => resolve()));
  await watcher.cancel();
}

async function store(hosts: string[]): Promise<Taker> {
  @Module({ imports: [LockModule.forRoot({ store: new EtcdLockStore({ hosts }), ttl: '30s' })] })
  class BenchModule {}
  const app: INestApplicationContext = await NestFactory.createApplicationContext(BenchModule, { logger: ['error', 'warn'] });
  const locks = app.get(LockService);
  return {
    acquire: (key, wait) => locks.acquire(key, wait ? { wait: '60s' } : {}),
    close: () => app.close(),
  };
}
