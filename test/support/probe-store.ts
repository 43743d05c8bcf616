import type {
  AcquireRequest,
  AcquireResult,
  LockStore,
  RenewRequest,
  RenewResult,
} from 'nestjs-distributed-lock';

/**
 * A real store seen through a window: every call goes to the wrapped store,
 * and the test can count calls, hold renewals or replies back (a slow
 * network), and take a key away from its holder (an operator deleting it).
 */
export class ProbeStore implements LockStore {
  readonly renewBatches: number[] = [];
  acquireCalls = 0;
  private readonly owners = new Map<string, string>();
  private renewGate?: Promise<void>;
  private acquireReplyGate?: Promise<void>;
  private failRenewals = false;

  constructor(
    readonly inner: LockStore,
    private readonly overrides: Partial<LockStore['traits']> = {},
  ) {}

  /** The inner store's traits, with overrides (e.g. `waits: false` to exercise the core's polling). */
  get traits() {
    return { ...this.inner.traits, ...this.overrides };
  }

  get clock() {
    return this.inner.clock;
  }

  /** Holds renewal replies until the returned function is called. */
  holdRenewals(): () => void {
    const [gate, open] = makeGate(() => (this.renewGate = undefined));
    this.renewGate = gate;
    return open;
  }

  /** Holds acquire replies (the store has already granted) until the returned function is called. */
  holdAcquireReplies(): () => void {
    const [gate, open] = makeGate(() => (this.acquireReplyGate = undefined));
    this.acquireReplyGate = gate;
    return open;
  }

  /** Makes renewals fail as if the store were unreachable. */
  breakRenewals(broken = true): void {
    this.failRenewals = broken;
  }

  /** Releases the key behind its holder's back. */
  async revoke(key: string): Promise<void> {
    const owner = [...this.owners].find(([storeKey]) => storeKey.endsWith(`:${key}`))?.[1];
    if (owner === undefined) throw new Error(`nobody holds ${key}`);
    const storeKey = [...this.owners.keys()].find((k) => k.endsWith(`:${key}`)) as string;
    await this.inner.release(storeKey, owner);
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    this.acquireCalls++;
    const gate = this.acquireReplyGate;
    const result = await this.inner.acquire(this.overrides.waits === false ? { ...request, wait: 0 } : request);
    if (result.acquired) this.owners.set(request.key, request.owner);
    if (gate) await gate;
    return result;
  }

  async renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    this.renewBatches.push(requests.length);
    if (this.renewGate) await this.renewGate;
    if (this.failRenewals) throw new Error('connection refused (probe)');
    return this.inner.renew(requests);
  }

  release(key: string, owner: string): Promise<boolean> {
    return this.inner.release(key, owner);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A promise and the function that resolves it, after running `onOpen`. */
function makeGate(onOpen: () => void): [Promise<void>, () => void] {
  let resolve!: () => void;
  const gate = new Promise<void>((r) => (resolve = r));
  return [
    gate,
    () => {
      onOpen();
      resolve();
    },
  ];
}
