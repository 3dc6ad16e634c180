// A node process's switchboard for host pipeline transfers: each local rank's relay port comes here; a
// message for a local rank goes straight to its port, one for a rank elsewhere goes to `remote` (the
// leader sends it to the node that hosts it; a follower sends it to the leader, which routes it on).
// One path per pair of ranks, so their messages keep their order.
import type { MessagePort } from 'node:worker_threads';
import type { RelayIn, RelayOut } from './relay-communicator.js';

export class RelayRouter {
  private readonly ports = new Map<number, MessagePort>();

  constructor(private readonly remote: (src: number, dst: number, data: Float32Array) => void) {}

  /** Takes rank `rank`'s end of its relay channel. */
  attach(rank: number, port: MessagePort): void {
    port.on('message', (m: RelayOut) => this.deliver(rank, m.dst, m.data));
    port.unref();
    this.ports.set(rank, port);
  }

  deliver(src: number, dst: number, data: Float32Array): void {
    const port = this.ports.get(dst);
    if (port) port.postMessage({ src, data } satisfies RelayIn);
    else this.remote(src, dst, data);
  }

  close(): void {
    for (const p of this.ports.values()) p.close();
    this.ports.clear();
  }
}
