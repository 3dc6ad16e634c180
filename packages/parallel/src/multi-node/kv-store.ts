// The key-value side of the node store (torch's TCPStore): set, a get that waits for the key, add (an
// atomic counter) and delete; the leader's store is a MemoryStore, followers reach it through TcpStoreClient.
// A barrier is built on add and get, as torch builds it.
import { BackendError } from '@zinfer/core';

export interface KeyValueStore {
  set(key: string, value: unknown): Promise<void>;
  /** The key's value; waits up to timeoutMs for it to be set. */
  get(key: string, timeoutMs?: number): Promise<unknown>;
  /** Adds n to a numeric key (0 when unset) and returns the sum. */
  add(key: string, n: number): Promise<number>;
  delete(key: string): Promise<void>;
}

export const DEFAULT_GET_TIMEOUT_MS = 60_000;

export class MemoryStore implements KeyValueStore {
  private readonly values = new Map<string, unknown>();
  private readonly waiters = new Map<string, Set<(v: unknown) => void>>();

  async set(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
    for (const w of this.waiters.get(key) ?? []) w(value);
    this.waiters.delete(key);
  }

  get(key: string, timeoutMs = DEFAULT_GET_TIMEOUT_MS): Promise<unknown> {
    if (this.values.has(key)) return Promise.resolve(this.values.get(key));
    return new Promise((resolve, reject) => {
      const waiters = this.waiters.get(key) ?? new Set();
      this.waiters.set(key, waiters);
      const done = (v: unknown) => {
        clearTimeout(timer);
        resolve(v);
      };
      const timer = setTimeout(() => {
        waiters.delete(done);
        reject(new BackendError(`store key ${JSON.stringify(key)} was not set within ${timeoutMs} ms`, { field: key, expected: `a value within ${timeoutMs} ms`, found: 'none' }));
      }, timeoutMs);
      waiters.add(done);
    });
  }

  async add(key: string, n: number): Promise<number> {
    const now = this.values.get(key) ?? 0;
    if (typeof now !== 'number') throw new BackendError(`store key ${JSON.stringify(key)} is not a counter`, { field: key, expected: 'a number', found: typeof now });
    await this.set(key, now + n);
    return now + n;
  }

  async delete(key: string): Promise<void> {
    this.values.delete(key);
  }
}

/** Returns once `count` callers reached barrier `name` (a name is used once), or fails after timeoutMs. */
export async function barrier(store: KeyValueStore, name: string, count: number, timeoutMs = DEFAULT_GET_TIMEOUT_MS): Promise<void> {
  const arrived = await store.add(`barrier/${name}`, 1);
  if (arrived === count) await store.set(`barrier/${name}/done`, true);
  try {
    await store.get(`barrier/${name}/done`, timeoutMs);
  } catch {
    throw new BackendError(`barrier ${JSON.stringify(name)}: ${count} nodes did not all arrive within ${timeoutMs} ms`, { field: name, expected: `${count} nodes`, found: 'fewer' });
  }
}
