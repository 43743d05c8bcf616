import { setTimeout as sleep } from 'node:timers/promises';
import { DbusDaemon } from '../test/support/dbus-daemon.js';
import { EtcdCluster } from '../test/support/etcd-cluster.js';
import { RedisServer } from '../test/support/redis-server.js';
import type { Random } from './random.js';

/** A store under test: its server(s), the faults they can suffer, and what the checker may expect. */
export interface Target {
  /** The LOCK_STORE url workers use. */
  url: string;
  /** Whether the store's tokens are ordered, so the resource can fence with them. */
  fencing: boolean;
  /** How long after a holder's death its key may stay unavailable, beyond the lock's ttl. */
  deathMargin: number;
  /** Server faults after which the store's leases start afresh (see `History.leaseResets`). */
  leaseResets?: string[];
  /** Server faults during which nobody can acquire (see `History.outages`). */
  outages?: string[];
  /** Faults on the server side; each heals itself before it resolves. */
  faults: Record<string, (random: Random) => Promise<void>>;
  stop(): Promise<void>;
}

/**
 * The stores the checker can run against, by name. Each starts real servers
 * on loopback for the run. Redis keeps its data across restarts here
 * (append-only file, fsync always), because its fencing counters are only
 * guaranteed while it keeps its data.
 */
export const targets: Record<string, (ttl: number) => Promise<Target>> = {
  /**
   * Broken on purpose: each worker gets its own in-process memory store, so
   * nothing excludes workers from each other. The checker's own test runs it
   * to show the checks catch a lock that does not lock.
   */
  async 'memory-per-process'() {
    return { url: 'memory:', fencing: true, deathMargin: 500, faults: {}, stop: async () => {} };
  },
  /**
   * A dead holder's lock ends with its lease; a waiter notices within its
   * re-check (a tenth of the ttl) and a round trip. The margin also covers
   * ioredis reconnecting after a restart, on a loaded machine (a 5-minute run
   * measured 1,532 ms from death to the next acquisition, ttl 1 s).
   */
  async redis(ttl) {
    const server = await RedisServer.start({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    return {
      url: server.url,
      fencing: true,
      deathMargin: 1_000,
      outages: ['pause-server', 'restart-server'],
      faults: {
        async 'pause-server'(random) {
          server.pause();
          await sleep(random.int(ttl / 4, ttl * 1.5));
          server.resume();
        },
        async 'restart-server'() {
          await server.restart();
        },
      },
      stop: () => server.stop(),
    };
  },

  /**
   * One etcd member. A killed holder's locks end with its session lease
   * (10 s by default), hence the margin.
   */
  async etcd(ttl) {
    const cluster = await EtcdCluster.start({ members: 1 });
    const [member] = cluster.members;
    return {
      url: cluster.storeUrl,
      fencing: true,
      // The session ttl, the election timeout etcd adds when a restarted
      // member leads again, its 500 ms expiry loop, and slack.
      deathMargin: 12_000,
      leaseResets: ['restart-server'],
      outages: ['pause-server', 'restart-server'],
      faults: {
        async 'pause-server'(random) {
          member?.pause();
          await sleep(random.int(ttl / 4, ttl * 1.5));
          member?.resume();
        },
        async 'restart-server'() {
          if (member) await cluster.restart(member);
        },
      },
      stop: () => cluster.stop(),
    };
  },

  /**
   * Three etcd members on loopback: the leader or a follower is killed and
   * comes back. Each election (the kill, and possibly the return) gives every
   * lease its full ttl again, so a dead holder's locks last a session ttl past
   * the last election.
   */
  async 'etcd-cluster'(ttl) {
    const cluster = await EtcdCluster.start({ members: 3 });
    const killAndRestore = async (random: Random, pick: 'leader' | 'follower') => {
      const leader = await cluster.leader();
      const victim = pick === 'leader' ? leader : cluster.members.find((member) => member !== leader && member.running);
      if (!victim) return;
      await victim.kill();
      await sleep(random.int(ttl, ttl * 3));
      await cluster.restart(victim);
    };
    return {
      url: cluster.storeUrl,
      fencing: true,
      deathMargin: 10_500,
      leaseResets: ['kill-leader', 'kill-follower'],
      faults: {
        'kill-leader': (random) => killAndRestore(random, 'leader'),
        'kill-follower': (random) => killAndRestore(random, 'follower'),
      },
      stop: () => cluster.stop(),
    };
  },

  /**
   * A private bus daemon. Its tokens are not ordered (`fencing: 'none'`), so
   * the resource only records; exclusion and lost updates are still checked.
   * A daemon restart ends every connection for good (the store reports all
   * its locks lost and fails later calls), so the server fault here is a pause.
   */
  async dbus(ttl) {
    const daemon = await DbusDaemon.start();
    return {
      url: `dbus:${daemon.address}`,
      fencing: false,
      deathMargin: 100,
      outages: ['pause-server'],
      faults: {
        async 'pause-server'(random) {
          daemon.pause();
          await sleep(random.int(ttl / 4, ttl * 1.5));
          daemon.resume();
        },
      },
      stop: () => daemon.stop(),
    };
  },
};
