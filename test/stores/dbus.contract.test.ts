import { after, before, describe, it } from 'node:test';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { DbusDaemon } from '../support/dbus-daemon.js';

let bus: DbusDaemon;
before(async () => {
  bus = await DbusDaemon.start();
});
after(() => bus.stop());

runLockStoreContract({ describe, it }, { name: 'DbusLockStore', createStore: () => new DbusLockStore({ address: bus.address }) });
