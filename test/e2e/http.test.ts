import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  CanActivate,
  Controller,
  ExecutionContext,
  Get,
  Header,
  HttpCode,
  Injectable,
  Param,
  ParseIntPipe,
  Post,
  SetMetadata,
  Sse,
  type MessageEvent,
  UseGuards,
  type INestApplication,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Observable, interval, map, take } from 'rxjs';
import { LockRoute, LockService, MemoryLockStore, WithLock, fromHeader, fromParam } from 'nestjs-distributed-lock';
import { baseUrl, createTestApp } from '../support/app.js';
import { ProbeStore } from '../support/probe-store.js';
import { waitFor } from '../support/wait-for.js';

const ROLE = 'role';
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class RoleGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}
  canActivate(context: ExecutionContext): boolean {
    return this.reflector.get<string>(ROLE, context.getHandler()) === 'cashier';
  }
}

interface Span {
  id: number;
  start: number;
  end: number;
}

@Controller('orders')
@UseGuards(RoleGuard)
class OrdersController {
  readonly spans: Span[] = [];
  readonly keyArgs: unknown[] = [];

  constructor(readonly locks: LockService) {}

  @Post(':id/pay')
  @HttpCode(200)
  @WithLock(function (this: OrdersController, id: number) {
    this.keyArgs.push(id);
    return `orders:${id}`;
  }, { wait: '5s' })
  @Header('X-Paid-By', 'lock-test')
  @SetMetadata(ROLE, 'cashier')
  async pay(@Param('id', ParseIntPipe) id: number): Promise<{ id: number; fence: number | undefined }> {
    const start = performance.now();
    await pause(60);
    this.spans.push({ id, start, end: performance.now() });
    return { id, fence: this.locks.current()?.fencingToken };
  }

  @SetMetadata(ROLE, 'cashier')
  @WithLock((id: string) => `refunds:${id}`)
  @Post(':id/refund')
  async refund(@Param('id') id: string): Promise<string> {
    return `refunded ${id}`;
  }

  @Post(':id/forbidden')
  @WithLock((id: string) => `orders:${id}`)
  async forbidden(@Param('id') id: string): Promise<string> {
    return id;
  }
}

@Controller('payments')
class PaymentsController {
  constructor(readonly locks: LockService) {}

  @Post()
  @LockRoute(fromHeader('Idempotency-Key', 'payments:'))
  async create(): Promise<{ fence: number | undefined }> {
    await pause(80);
    return { fence: this.locks.current()?.fencingToken };
  }

  @Get('exports/:id')
  @LockRoute(fromParam('id', 'exports:'))
  stream(): Observable<number> {
    return interval(40).pipe(
      take(4),
      map((i) => i),
    );
  }

  @Get('forever/:id')
  @LockRoute(fromParam('id', 'forever:'), { ttl: 300 })
  forever(): Observable<number> {
    return new Observable<number>(() => {});
  }
}

describe('HTTP routes under locks', () => {
  let app: INestApplication;
  let url: string;
  let store: ProbeStore;

  before(async () => {
    store = new ProbeStore(new MemoryLockStore());
    app = await createTestApp({ controllers: [OrdersController, PaymentsController], providers: [RoleGuard], lock: { store }, listen: true });
    url = await baseUrl(app);
  });
  after(async () => {
    await app.close();
    await store.close();
  });

  const post = (path: string, headers: Record<string, string> = {}) => fetch(`${url}${path}`, { method: 'POST', headers });

  it('serializes concurrent payments of one order and runs different orders in parallel', async () => {
    const controller = app.get(OrdersController);
    controller.spans.length = 0;
    const responses = await Promise.all([post('/orders/1/pay'), post('/orders/1/pay'), post('/orders/1/pay'), post('/orders/2/pay')]);
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 200]);
    const same = controller.spans.filter((s) => s.id === 1).sort((a, b) => a.start - b.start);
    for (let i = 1; i < same.length; i++) assert.ok(same[i].start >= same[i - 1].end, 'same-order payments never overlap');
    const other = controller.spans.find((s) => s.id === 2) as Span;
    assert.ok(same.some((s) => s.start < other.end && other.start < s.end), 'a different order ran alongside');
    const bodies = await Promise.all(responses.map((r) => r.json() as Promise<{ fence: number }>));
    assert.ok(bodies.every((b) => typeof b.fence === 'number'), 'the handler sees its lock through LockService.current()');
  });

  it('keeps route, status, header and guard metadata with @WithLock above or below them', async () => {
    const paid = await post('/orders/5/pay');
    assert.equal(paid.status, 200, '@HttpCode kept');
    assert.equal(paid.headers.get('x-paid-by'), 'lock-test', '@Header kept');
    const refund = await post('/orders/5/refund');
    assert.equal(refund.status, 201);
    assert.equal(await refund.text(), 'refunded 5');
    assert.equal((await post('/orders/5/forbidden')).status, 403, 'the guard still reads its metadata');
  });

  it('gives the key function the arguments after pipes', async () => {
    const controller = app.get(OrdersController);
    await post('/orders/9/pay');
    assert.equal(controller.keyArgs.at(-1), 9);
  });

  it('answers 409 with Retry-After, without naming the lock, when the lock stays busy', async () => {
    const held = await app.get(LockService).acquire('refunds:7', { ttl: '20s' });
    try {
      const response = await post('/orders/7/refund');
      assert.equal(response.status, 409);
      assert.equal(response.headers.get('retry-after'), '20');
      const body = (await response.json()) as { message: string; statusCode: number };
      assert.equal(body.statusCode, 409);
      assert.doesNotMatch(JSON.stringify(body), /refunds:7/);
    } finally {
      await held.release();
    }
  });

  it('locks a route by its Idempotency-Key header and answers 400 without one', async () => {
    const [first, second] = await Promise.all([
      post('/payments', { 'Idempotency-Key': 'abc' }),
      pause(20).then(() => post('/payments', { 'Idempotency-Key': 'abc' })),
    ]);
    assert.equal(first.status, 201);
    assert.equal(second.status, 409);
    assert.equal(typeof ((await first.json()) as { fence: number }).fence, 'number');
    assert.equal((await post('/payments', { 'Idempotency-Key': 'abc' })).status, 201, 'free again after the response');
    const missing = await post('/payments');
    assert.equal(missing.status, 400);
    assert.match(await missing.text(), /Idempotency-Key header is required/);
    const hostile = 'x'.repeat(1100);
    const tooLong = await post('/payments', { 'Idempotency-Key': hostile });
    assert.equal(tooLong.status, 400, 'a header no lock key can hold is the client\'s mistake, not a 500');
    const body = await tooLong.text();
    assert.match(body, /Idempotency-Key header is too long; at most 1015 characters/);
    assert.ok(!body.includes(hostile), 'the answer does not echo the value');
    assert.equal((await fetch(`${url}/payments/exports/${'y'.repeat(1100)}`)).status, 400, 'the same for a route parameter');
  });

  it('holds a route lock until the returned Observable completes', async () => {
    const locks = app.get(LockService);
    const streaming = fetch(`${url}/payments/exports/x`);
    await waitFor(() => store.acquireCalls > 0);
    await pause(60);
    assert.equal(await locks.tryAcquire('exports:x'), null, 'held while the stream runs');
    const response = await streaming;
    assert.equal(response.status, 200);
    const lock = await locks.tryAcquire('exports:x');
    assert.ok(lock, 'released once the stream completed');
    await lock.release();
  });

  it('fails a stream whose lock is lost instead of letting it run on without the lock', async () => {
    const lost: string[] = [];
    const stop = app.get(LockService).onLost((lock) => lost.push(lock.key));
    try {
      const response = fetch(`${url}/payments/forever/y`);
      const calls = store.acquireCalls;
      await waitFor(() => store.acquireCalls > calls, 2_000, 'the route took its lock');
      await store.revoke('forever:y');
      assert.equal((await response).status, 500);
      assert.deepEqual(lost, ['forever:y']);
    } finally {
      stop();
    }
  });
});

@Controller('slow')
class SlowController {
  readonly spans: { start: number; end: number }[] = [];

  @Post(':id')
  @WithLock((id: string) => `slow:${id}`, { wait: '10s' })
  async run(@Param('id') id: string): Promise<string> {
    const start = performance.now();
    await pause(400);
    this.spans.push({ start, end: performance.now() });
    return id;
  }

  @Post('route/:id')
  @LockRoute(fromParam('id', 'slow-route:'), { wait: '10s' })
  async route(@Param('id') id: string): Promise<string> {
    return this.run(`route-${id}`);
  }

  @Sse('events/:id')
  @WithLock((id: string) => `events:${id}`)
  events(@Param('id') _id: string): Observable<MessageEvent> {
    return interval(40).pipe(
      take(4),
      map((i) => ({ data: { i } })),
    );
  }
}

describe('HTTP at shutdown', () => {
  it('finishes the request inside a section, answers a request queued for its lock 503 at once, and closes without waiting out the wait', async () => {
    const app = await createTestApp({ controllers: [SlowController], listen: true });
    const url = await baseUrl(app);
    const controller = app.get(SlowController);
    const inside = fetch(`${url}/slow/1`, { method: 'POST' });
    await waitFor(async () => {
      const probe = await app.get(LockService).tryAcquire('slow:1');
      await probe?.release();
      return probe === null;
    }, 2_000, 'the first request holds its lock');
    const queued = fetch(`${url}/slow/1`, { method: 'POST' });
    await pause(50);
    const started = performance.now();
    await app.close();
    const closeMs = performance.now() - started;
    const [first, second] = await Promise.all([inside, queued]);
    assert.equal(first.status, 201, 'the request inside its section ran to the end');
    assert.equal(await first.text(), '1');
    assert.equal(second.status, 503, 'the queued request is told this instance is going away');
    assert.doesNotMatch(await second.text(), /slow:1/, 'without naming the lock');
    assert.equal(controller.spans.length, 1, 'the queued request never ran');
    assert.ok(closeMs < 2_000, `close() took ${closeMs.toFixed(0)}ms; it must not wait out the queued request's 10s wait`);
  });

  it('holds the lock of an @Sse handler under @WithLock until its stream completes', async () => {
    const app = await createTestApp({ controllers: [SlowController], listen: true });
    const url = await baseUrl(app);
    const locks = app.get(LockService);
    const response = await fetch(`${url}/slow/events/e`);
    assert.equal(response.status, 200);
    const reading = response.text();
    await pause(60);
    assert.equal(await locks.tryAcquire('events:e'), null, 'held while the stream runs');
    assert.equal((await reading).match(/data:/g)?.length, 4);
    await waitFor(async () => {
      const lock = await locks.tryAcquire('events:e');
      await lock?.release();
      return lock !== null;
    }, 1_000, 'released once the stream completed');
    await app.close();
  });
});

describe('HTTP clients that go away', () => {
  for (const [name, path, innerKey] of [
    ['@WithLock', '/slow/9', 'slow:9'],
    ['@LockRoute', '/slow/route/9', 'slow:route-9'],
  ] as const) {
    it(`gives up the queue place of a request whose client went away, so its handler never runs (${name})`, async (t) => {
      const app = await createTestApp({ controllers: [SlowController], listen: true });
      t.after(() => app.close());
      const url = await baseUrl(app);
      const controller = app.get(SlowController);
      const first = fetch(`${url}${path}`, { method: 'POST' });
      await waitFor(async () => {
        const probe = await app.get(LockService).tryAcquire(innerKey);
        await probe?.release();
        return probe === null;
      }, 2_000, 'the first request is inside its section');
      const abandoned = Array.from({ length: 10 }, () => {
        const gone = new AbortController();
        const request = fetch(`${url}${path}`, { method: 'POST', signal: gone.signal }).catch(() => 'gone');
        setTimeout(() => gone.abort(), 100);
        return request;
      });
      await Promise.all(abandoned);
      const legit = await fetch(`${url}${path}`, { method: 'POST' });
      assert.equal((await first).status, 201);
      assert.equal(legit.status, 201, 'the client still there is served, not answered 409 behind abandoned requests');
      assert.equal(controller.spans.length, 2, `only the first and the last request ran their handler, not ${controller.spans.length}`);
    });
  }
});
