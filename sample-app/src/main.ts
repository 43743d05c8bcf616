import 'reflect-metadata';
import { hostname } from 'node:os';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { storeFromUrl } from './store-from-url.js';

const app = await NestFactory.create(
  AppModule.forRoot({
    instance: process.env.INSTANCE_NAME ?? `${hostname()}:${process.pid}`,
    store: storeFromUrl(process.env.LOCK_STORE),
    closeStore: true,
  }),
);
// Releases held locks on SIGTERM, so other instances need not wait out their leases.
app.enableShutdownHooks();
await app.listen(process.env.PORT ?? 3000);
