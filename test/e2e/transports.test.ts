import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Catch, Controller, type INestMicroservice, type INestApplication, type RpcExceptionFilter } from '@nestjs/common';
import { ClientProxyFactory, MessagePattern, RpcException, Transport, type ClientProxy } from '@nestjs/microservices';
import { WsAdapter } from '@nestjs/platform-ws';
import { Test } from '@nestjs/testing';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { firstValueFrom, throwError, timer, map, type Observable } from 'rxjs';
import WebSocket from 'ws';
import { LockModule, LockRoute, LockService, LockUnavailableError } from 'nestjs-distributed-lock';

interface Span {
  id: string;
  start: number;
  end: number;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const overlaps = (a: Span, b: Span) => a.start < b.end && b.start < a.end;

/** How an application tells RPC callers that a lock is busy (the README shows this filter). */
@Catch(LockUnavailableError)
class LockUnavailableRpcFilter implements RpcExceptionFilter<LockUnavailableError> {
  catch(error: LockUnavailableError): Observable<never> {
    return throwError(() => new RpcException({ code: error.code, retryAfter: error.retryAfter }).getError());
  }
}

@Controller()
class PaymentsHandler {
  readonly spans: Span[] = [];
  constructor(private readonly locks: LockService) {}

  @MessagePattern('pay')
  @LockRoute((context) => `rpc:${context.switchToRpc().getData<{ id: string }>().id}`, { wait: '2s' })
  async pay(data: { id: string }): Promise<number | undefined> {
    const start = performance.now();
    await pause(50);
    this.spans.push({ id: data.id, start, end: performance.now() });
    return this.locks.current()?.fencingToken;
  }

  @MessagePattern('export')
  @LockRoute((context) => `rpc:export:${context.switchToRpc().getData<{ id: string }>().id}`)
  export(): Observable<number> {
    return timer(80).pipe(map(() => 1));
  }
}

@WebSocketGateway()
class PaymentsGateway {
  readonly spans: Span[] = [];

  @SubscribeMessage('pay')
  @LockRoute((context) => `ws:${context.switchToWs().getData<{ id: string }>().id}`, { wait: '2s' })
  async pay(@MessageBody() data: { id: string }): Promise<{ event: string; data: string }> {
    const start = performance.now();
    await pause(50);
    this.spans.push({ id: data.id, start, end: performance.now() });
    return { event: 'paid', data: data.id };
  }
}

describe('@LockRoute on a TCP microservice', () => {
  let service: INestMicroservice;
  let client: ClientProxy;

  before(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot()], controllers: [PaymentsHandler] }).compile();
    service = moduleRef.createNestMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: 0 } , logger: false});
    service.useGlobalFilters(new LockUnavailableRpcFilter());
    await service.listen();
    const address = (service.unwrap<{ address(): { port: number } }>()).address();
    client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: address.port } });
    await client.connect();
  });
  after(async () => {
    await client.close();
    await service.close();
  });

  it('serializes messages for one key and runs other keys alongside', async () => {
    const handler = service.get(PaymentsHandler);
    const tokens = await Promise.all(['a', 'a', 'a', 'b'].map((id) => firstValueFrom(client.send<number>('pay', { id }))));
    assert.ok(tokens.every((t) => typeof t === 'number'), 'the handler sees its lock through LockService.current()');
    const same = handler.spans.filter((s) => s.id === 'a');
    for (let i = 0; i < same.length; i++) for (let j = i + 1; j < same.length; j++) assert.ok(!overlaps(same[i], same[j]));
    const other = handler.spans.find((s) => s.id === 'b') as Span;
    assert.ok(same.some((s) => overlaps(s, other)), 'a different key ran alongside');
  });

  it('tells a caller the lock is busy through the application\'s filter, and frees it once the reply completes', async () => {
    const first = firstValueFrom(client.send<number>('export', { id: 'x' }));
    await pause(30);
    await assert.rejects(firstValueFrom(client.send('export', { id: 'x' })), (error: unknown) => {
      assert.equal((error as { code?: string }).code, 'LOCK_UNAVAILABLE');
      return true;
    });
    assert.equal(await first, 1);
    assert.equal(await firstValueFrom(client.send('export', { id: 'x' })), 1, 'free again after the first reply');
  });
});

describe('@LockRoute on a WebSocket gateway', () => {
  let app: INestApplication;
  let url: string;

  before(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot()], providers: [PaymentsGateway] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    app.useWebSocketAdapter(new WsAdapter(app));
    await app.listen(0, '127.0.0.1');
    url = `ws://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  });
  after(async () => {
    await app.close();
  });

  it('serializes messages for one key across connections', async () => {
    const sockets = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const socket = new WebSocket(url);
            socket.once('open', () => resolve(socket));
            socket.once('error', reject);
          }),
      ),
    );
    try {
      const replies = sockets.map(
        (socket) => new Promise<string>((resolve) => socket.once('message', (raw) => resolve(String(raw)))),
      );
      for (const socket of sockets) socket.send(JSON.stringify({ event: 'pay', data: { id: 'w' } }));
      const answers = await Promise.all(replies);
      assert.ok(answers.every((answer) => JSON.parse(answer).event === 'paid'));
      const spans = app.get(PaymentsGateway).spans;
      assert.equal(spans.length, 3);
      for (let i = 0; i < spans.length; i++) for (let j = i + 1; j < spans.length; j++) assert.ok(!overlaps(spans[i], spans[j]));
    } finally {
      for (const socket of sockets) socket.close();
    }
  });
});
