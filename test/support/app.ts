import 'reflect-metadata';
import type { DynamicModule, INestApplication, Provider, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { LockModule, type LockModuleOptions } from 'nestjs-distributed-lock';

export interface TestAppOptions {
  lock?: LockModuleOptions;
  providers?: Provider[];
  controllers?: Type[];
  imports?: (Type | DynamicModule)[];
  /** Listen on a free loopback port (for HTTP tests). */
  listen?: boolean;
}

/** A real Nest application with LockModule, initialised (and listening when asked). */
export async function createTestApp(options: TestAppOptions = {}): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [LockModule.forRoot(options.lock ?? {}), ...(options.imports ?? [])],
    providers: options.providers ?? [],
    controllers: options.controllers ?? [],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  if (options.listen) await app.listen(0, '127.0.0.1');
  else await app.init();
  return app;
}

/** The base URL of a listening app. */
export async function baseUrl(app: INestApplication): Promise<string> {
  const address = app.getHttpServer().address() as { port: number };
  return `http://127.0.0.1:${address.port}`;
}
