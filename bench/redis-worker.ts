/**
 * One process of the contended Redis benchmark, forked by redis.bench.ts:
 * `workers` loops in this process share one implementation instance (for
 * ours: one Nest application, so one LockService and one RedisLockStore per
 * process, as in a deployed app), and each loop acquires the one key, holds
 * it `holdMs` with `await setTimeout(holdMs)`, releases it and starts again,
 * until the run's end.
 *
 * Protocol (IPC): argv[2] is the JSON WorkerConfig. The worker connects, warms
 * up on a key of its own, measures its round trip (PING) and what
 * setTimeout(holdMs) really takes, and sends 'ready'; on 'start' it waits
 * for the shared start time, runs (PINGing on a side connection every
 * RTT_EVERY_MS, to know the round trip under the run's own load), sends
 * 'done' with one record per acquisition, closes everything and exits.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createContender, type Held } from './redis-contenders.js';
import { countSentCommands, sentCommands, sentSince } from './redis-counters.js';
import { monotonicNow, type FromWorker, type ToWorker, type WorkerConfig } from './redis-protocol.js';

/** How often each worker process PINGs Redis during the run, to know the round trip under the run's load. */
const RTT_EVERY_MS = 20;

const send = (message: FromWorker): Promise<void> =>
  new Promise((resolve, reject) => process.send?.(message, undefined, {}, (error) => (error ? reject(error) : resolve())));

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig;
  countSentCommands();
  const messages: number[] = [];
  let lastSentAt = -1;
  if (config.trace) {
    type Proto = {
      emit: (this: Redis, event: string | symbol, ...args: unknown[]) => boolean;
      sendCommand: (this: Redis, command: unknown, stream?: unknown) => unknown;
    };
    const proto = Redis.prototype as unknown as Proto;
    const { emit, sendCommand } = proto;
    proto.emit = function (this: Redis, event, ...args) {
      if (event === 'message') messages.push(monotonicNow());
      return emit.call(this, event, ...args);
    };
    proto.sendCommand = function (this: Redis, command, stream) {
      lastSentAt = monotonicNow();
      return sendCommand.call(this, command, stream);
    };
  }
  const workers = Array.from({ length: config.workers }, (_, i) => config.proc * config.workers + i);
  const contender = await createContender(config.id, config.url, { key: config.key, workers, totalWorkers: config.totalWorkers });

  // Warm-up on a key of this process alone: connections, scripts, JIT, and
  // ours' wake-up subscription (made by the first acquire that may wait).
  const warmKey = `${config.key}:warm:${config.proc}`;
  for (let i = 0; i < config.warmupPairs; i++) {
    const held = await contender.acquire(warmKey);
    await held?.release();
  }

  // Calibration: the round trip to Redis and the real length of the hold.
  const probe = new Redis(config.url);
  const rttMs: number[] = [];
  for (let i = 0; i < config.calibrationSamples; i++) {
    const t0 = performance.now();
    await probe.ping();
    rttMs.push(performance.now() - t0);
  }
  await probe.quit();
  const holdMs: number[] = [];
  for (let i = 0; i < Math.min(100, config.calibrationSamples); i++) {
    const t0 = performance.now();
    await sleep(config.holdMs);
    holdMs.push(performance.now() - t0);
  }

  const side = new Redis(config.url);
  await side.ping();

  const start = new Promise<number>((resolve) => process.once('message', (message: ToWorker) => resolve(message.at)));
  await send({ type: 'ready', rttMs, holdMs });
  const at = await start;
  await sleep(Math.max(0, at - monotonicNow()));

  const end = config.durationMs;
  const since = (): number => monotonicNow() - at;
  const records: number[] = [];
  const errors: string[] = [];
  // The round trip under the run's own load: a PING every RTT_EVERY_MS on the side connection.
  const runRttMs: number[] = [];
  let sampling = true;
  const sample = async (): Promise<void> => {
    while (sampling) {
      await sleep(RTT_EVERY_MS);
      const t0 = performance.now();
      await side.ping();
      runRttMs.push(performance.now() - t0);
    }
  };
  const cpu = process.cpuUsage();
  const sentBefore = new Map(sentCommands);

  const loop = async (worker: number): Promise<void> => {
    while (since() < end) {
      const first = since();
      let giveUps = 0;
      let held: Held | null = null;
      let request = first;
      for (;;) {
        request = since();
        try {
          held = await contender.acquire(config.key, worker);
        } catch (error) {
          if (errors.length < 20) errors.push(`acquire: ${String(error)}`);
          held = null;
        }
        if (held) break;
        giveUps++;
        if (since() >= end) break; // gave up after the end: stop, counted as a give-up
      }
      if (!held) {
        records.push(worker, first, request, -1, -1, -1, giveUps, -1, -1);
        break;
      }
      const grant = since();
      // The latest pub/sub message this process received before the grant (trace only).
      const messageAt = config.trace && messages.length > 0 ? messages[messages.length - 1]! - at : -1;
      await sleep(config.holdMs);
      const release = since();
      lastSentAt = -1;
      const releasing = held.release();
      // trace: ours and the ring reach ioredis' sendCommand synchronously, so this is their release request going out
      const releaseSent = config.trace && lastSentAt >= 0 ? lastSentAt - at : -1;
      try {
        await releasing;
      } catch (error) {
        if (errors.length < 20) errors.push(`release: ${String(error)}`);
      }
      records.push(worker, first, request, grant, release, since(), giveUps, messageAt, releaseSent);
    }
  };
  const sampler = sample();
  await Promise.all(workers.map(loop));
  sampling = false;
  await sampler;
  await side.quit();
  const used = process.cpuUsage(cpu);
  const sent = sentSince(sentBefore);
  errors.push(...contender.errors);
  await send({ type: 'done', records, cpuMs: (used.user + used.system) / 1_000, errors, sent, rttMs: runRttMs });
  await contender.close();
  process.disconnect();
}

main().catch(async (error: unknown) => {
  await send({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) }).catch(() => {});
  process.exit(1);
});
