import { describe, it } from 'node:test';
import { MemoryLockStore } from 'nestjs-distributed-lock';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';

runLockStoreContract({ describe, it }, { name: 'MemoryLockStore', createStore: () => new MemoryLockStore() });
