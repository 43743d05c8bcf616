/** What a worker is told (as JSON in the CHECKER_WORKER environment variable). */
export interface WorkerConfig {
  id: number;
  storeUrl: string;
  resourceUrl: string;
  keys: string[];
  ttl: number;
  wait: number;
  /** Longest pause inside a critical section, between the read and the write. */
  holdMs: number;
  /**
   * Check `lock.held` right before writing. Off for stores with ordered
   * tokens, where the resource's fencing must catch a stale write by itself;
   * on for a store without (D-Bus), as its users are told to do.
   */
  checkHeldBeforeWrite: boolean;
  seed: number;
}

/** A worker entered a critical section (sent before it touches the resource). */
export interface EnterEvent {
  type: 'enter';
  worker: number;
  key: string;
  token: number;
  /** Host monotonic ms. */
  start: number;
  /** The lock's deadline at entry, host monotonic ms. */
  deadline: number;
}

/** A worker left a critical section (its lock is released right after). */
export interface SectionEvent {
  type: 'section';
  worker: number;
  key: string;
  token: number;
  start: number;
  end: number;
  /** The lock's deadline as the holder last knew it, host monotonic ms. */
  deadline: number;
  /** When the holder's signal aborted, if it did before the section ended. */
  abortedAt?: number;
  write: 'accepted' | 'stale' | 'failed' | 'skipped';
}

export interface CountEvent {
  type: 'busy' | 'store-error';
  worker: number;
  message?: string;
}

export type WorkerEvent = EnterEvent | SectionEvent | CountEvent | { type: 'ready' | 'stopped'; worker: number };

/** One operation the resource saw, in the order it applied them. */
export interface ResourceOp {
  kind: 'read' | 'write';
  key: string;
  token: number;
  /** Host monotonic ms when applied. */
  at: number;
  /** For writes: the value the writer read, and what the resource held when the write arrived. */
  read?: number;
  current?: number;
  accepted: boolean;
}
