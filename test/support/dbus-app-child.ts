// Run as a child process by the D-Bus shutdown tests: a Nest application
// with LockModule on a DbusLockStore (ttl 2s, shutdownTimeout 200ms) runs one
// section of `sectionMs` under lock `key`, ignoring the lock's signal as code
// that cannot be stopped midway does, and reports what happens as JSON lines
// on stdout, times (`at`) on the host's monotonic clock (see dbus-child.ts).
//
// Arguments: <bus address> <key> <sectionMs> <close | sigterm | sigterm-listened>
// - close: the application closes (app.close()) when stdin ends;
// - sigterm: shutdown hooks are on and SIGTERM closes it; Nest then raises
//   SIGTERM again, which ends the process;
// - sigterm-listened: the same, but the application listens for SIGTERM
//   itself too, so that second SIGTERM does not end the process, which runs
//   on until its work is done.
// The process never calls process.exit: it ends when nothing keeps it alive.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';

const [address, key, sectionMs, mode] = process.argv.slice(2);
if (!address || !key || !sectionMs || !['close', 'sigterm', 'sigterm-listened'].includes(mode ?? '')) {
  throw new Error('usage: dbus-app-child <bus address> <key> <sectionMs> <close | sigterm | sigterm-listened>');
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ ...event, at: now() })}\n`);
};

@Module({ imports: [LockModule.forRoot({ store: new DbusLockStore({ address }), ttl: '2s', shutdownTimeout: '200ms' })] })
class AppModule {}

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
if (mode === 'close') {
  process.stdin.resume();
  process.stdin.once('end', () => {
    emit({ op: 'closing' });
    void app.close().then(() => emit({ op: 'closed' }));
  });
} else {
  app.enableShutdownHooks(['SIGTERM']);
  if (mode === 'sigterm-listened') process.on('SIGTERM', () => emit({ op: 'sigterm' }));
}

const locks = app.get(LockService);
void locks.withLock(key, async () => {
  emit({ op: 'enter' });
  await new Promise((resolve) => setTimeout(resolve, Number(sectionMs)));
  emit({ op: 'exit' });
});
