// Run as a child process by the shutdown process tests: one instance of an
// application with a @WithLock section on one key, as a team deploys it.
// It reports JSON lines on stdout with host monotonic times (comparable across
// processes): {"event":"ready"}, {"event":"enter","at"}, {"event":"leave","at"},
// {"event":"closed","at"} once app.close() resolved.
// Arguments: <store url> <key> <section ms> <shutdownTimeout ms> <ttl ms>.
// Standard input: "run" starts one call of the section; "close" closes the
// application. SIGTERM closes it too (enableShutdownHooks), as a rolling
// deploy does; the process must then exit by itself.
import 'reflect-metadata';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, WithLock } from 'nestjs-distributed-lock';
import { storeFromUrl } from '../../sample-app/src/store-from-url.js';

const [url, key, sectionMs, shutdownTimeout, ttl] = process.argv.slice(2);
if (!url || !key || !sectionMs || !shutdownTimeout || !ttl) {
  throw new Error('usage: shutdown-child <url> <key> <section ms> <shutdownTimeout ms> <ttl ms>');
}
const hostNow = () => Number(process.hrtime.bigint()) / 1e6;
const report = (event: string, fields: Record<string, unknown> = {}) => console.log(JSON.stringify({ event, ...fields }));

@Injectable()
class Charges {
  @WithLock(key, { wait: '10s' })
  async charge(): Promise<void> {
    report('enter', { at: hostNow() });
    await sleep(Number(sectionMs));
    report('leave', { at: hostNow() });
  }
}

@Module({
  imports: [LockModule.forRoot({ store: storeFromUrl(url), ttl: Number(ttl), shutdownTimeout: Number(shutdownTimeout) })],
  providers: [Charges],
})
class AppModule {}

const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error'] });
app.enableShutdownHooks();
const charges = app.get(Charges);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'run') {
    charges.charge().catch((error: Error) => report('refused', { error: error.name }));
  } else if (line === 'close') {
    void app.close().then(() => {
      report('closed', { at: hostNow() });
      process.stdin.destroy();
    });
  }
});
report('ready');
