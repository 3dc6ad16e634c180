// A pipeline group whose stages sit on different nodes, for host backends (cpu, reference): shared memory
// exists only inside one process, so a stage's activations travel from its worker through a MessagePort
// to its node process, over the node connection to the node of the receiving stage, and through that
// node's port into the receiving worker. Point-to-point transport only: collectives never cross nodes on
// host backends (the node split keeps every tensor group inside one node), so they throw here.
import type { MessagePort } from 'node:worker_threads';
import { BackendError, type Communicator } from '@zinfer/core';

/** What a rank's worker posts on its relay port, and receives on it (src/dst: global ranks). */
export type RelayOut = { dst: number; data: Float32Array };
export type RelayIn = { src: number; data: Float32Array };

export interface RelaySpec {
  port: MessagePort;
  /** Pipeline stages (the group's size). */
  stages: number;
  /** Ranks per pipeline stage: the global rank of stage s in this rank's pipeline group is s × tensorSize + tensorRank. */
  tensorSize: number;
  /** How long recv waits for a peer before it reports it dead or hung. */
  timeoutMs: number;
}

export function relayCommunicator(spec: RelaySpec, globalRank: number): Communicator {
  return new RelayCommunicator(spec, globalRank);
}

class RelayCommunicator implements Communicator {
  readonly rank: number;
  readonly size: number;
  private readonly tensorRank: number;
  /** Messages that arrived before their recv, by sending global rank, in arrival order. */
  private readonly inbox = new Map<number, Float32Array[]>();
  private readonly waiting = new Map<number, (data: Float32Array) => void>();
  private closed: Error | null = null;

  constructor(private readonly spec: RelaySpec, globalRank: number) {
    this.rank = Math.floor(globalRank / spec.tensorSize);
    this.size = spec.stages;
    this.tensorRank = globalRank % spec.tensorSize;
    spec.port.on('message', (m: RelayIn) => {
      const take = this.waiting.get(m.src);
      if (take) {
        this.waiting.delete(m.src);
        return take(m.data);
      }
      this.inbox.set(m.src, [...(this.inbox.get(m.src) ?? []), m.data]);
    });
    spec.port.unref(); // a rank's thread lives on its leader connection, not on this port
  }

  allReduce(): Promise<void> {
    return this.noCollective('allReduce');
  }

  allGather(): Promise<void> {
    return this.noCollective('allGather');
  }

  allToAll(): Promise<void> {
    return this.noCollective('allToAll');
  }

  async send(buf: Float32Array, peer: number): Promise<void> {
    if (this.closed) throw this.closed;
    this.spec.port.postMessage({ dst: this.globalOf(peer), data: buf.slice() } satisfies RelayOut);
  }

  async recv(buf: Float32Array, peer: number): Promise<void> {
    if (this.closed) throw this.closed;
    const src = this.globalOf(peer);
    const queued = this.inbox.get(src);
    const data = queued?.length ? queued.shift()! : await this.next(src);
    if (data.length !== buf.length) throw new BackendError(`recv from stage ${peer}: message of ${data.length} values, buffer of ${buf.length}`);
    buf.set(data);
  }

  async close(): Promise<void> {
    this.closed ??= new BackendError(`the pipeline relay of stage ${this.rank} is closed (a rank failed or the program was disposed)`);
    for (const take of this.waiting.values()) take(new Float32Array(0));
    this.waiting.clear();
    this.spec.port.close();
  }

  /** The next message from `src`; a dead or hung peer becomes an error after the timeout. */
  private next(src: number): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(src);
        reject(new BackendError(`stage ${this.rank} waited ${this.spec.timeoutMs} ms for an activation from rank ${src} on another node: the node or the rank died or hung`));
      }, this.spec.timeoutMs);
      this.waiting.set(src, (data) => {
        clearTimeout(timer);
        if (this.closed) reject(this.closed);
        else resolve(data);
      });
    });
  }

  private globalOf(stage: number): number {
    if (!(Number.isInteger(stage) && stage >= 0 && stage < this.size && stage !== this.rank)) throw new BackendError(`pipeline relay: no peer stage ${stage}`, { field: 'peer', expected: `another stage of 0..${this.size - 1}`, found: String(stage) });
    return stage * this.spec.tensorSize + this.tensorRank;
  }

  private noCollective(what: string): Promise<void> {
    return Promise.reject(new BackendError(`${what} on a pipeline group that spans nodes: collectives do not cross nodes on host backends (cpu, reference); only the stages' activations do`, {
      field: 'parallel', expected: 'tensor groups inside one node (--tp divides the ranks per node)', found: `${what} across nodes`,
    }));
  }
}
