// One node connection: length-prefixed frames (4-byte big-endian length, then the payload) whose payloads
// are node:v8 serialized values (both ends are Node: Maps, typed arrays and bigints survive, no codec of
// our own). Each side pings every second; a connection silent for longer than the heartbeat timeout is
// closed as dead, so a node that hangs is noticed as fast as one that dies. A frame too long, or whose
// payload does not deserialize to a message, closes the connection with a BackendError; nothing throws
// out of the socket's handlers.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { deserialize, serialize } from 'node:v8';
import { BackendError } from '@zinfer/core';

/** The longest frame accepted (a launch carries every rank graph of a node; logits come back per step). */
export const MAX_FRAME_BYTES = 1 << 30;
const PING_MS = 1000;

/** Every frame is an object whose `t` says what it is. */
export interface Frame {
  t: string;
  [k: string]: unknown;
}

export interface FramedEvents {
  frame: [Frame];
  /** Once, with why: null for a close asked for on this side. */
  close: [BackendError | null];
}

export class FramedConnection extends EventEmitter<FramedEvents> {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private lastSeen = Date.now();
  private readonly beat: ReturnType<typeof setInterval>;
  private ended = false;

  /** `peer` names the other end in errors ("node 1 at 10.0.0.2:41230"). */
  constructor(readonly socket: Socket, public peer: string, heartbeatTimeoutMs = 10_000) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.receive(d));
    socket.on('error', (e) => this.close(new BackendError(`connection to ${this.peer} failed: ${e.message}`)));
    socket.on('close', () => this.close(new BackendError(`${this.peer} closed the connection`)));
    this.beat = setInterval(() => {
      if (Date.now() - this.lastSeen > heartbeatTimeoutMs) return this.close(new BackendError(`${this.peer} sent no heartbeat for ${heartbeatTimeoutMs} ms: dead or hung`));
      this.send({ t: 'ping' });
    }, PING_MS);
    this.beat.unref();
  }

  get open(): boolean {
    return !this.ended;
  }

  send(frame: Frame): void {
    if (this.ended) return;
    const body = serialize(frame);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    this.socket.write(head);
    this.socket.write(body);
  }

  /** Ends the connection; `reason` null when this side chose to. Emits 'close' once. */
  close(reason: BackendError | null = null): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.beat);
    if (reason) this.socket.destroy();
    else this.socket.end();
    this.emit('close', reason);
  }

  private receive(d: Buffer): void {
    if (this.ended) return;
    this.lastSeen = Date.now();
    this.chunks.push(d);
    this.buffered += d.length;
    while (!this.ended && this.buffered >= 4) {
      const head = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
      this.chunks = [head];
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) return this.close(new BackendError(`bad frame from ${this.peer}: ${length} bytes`, { expected: `at most ${MAX_FRAME_BYTES} bytes`, found: `${length}` }));
      if (this.buffered < 4 + length) return;
      const frame = decode(head.subarray(4, 4 + length));
      this.chunks = [head.subarray(4 + length)];
      this.buffered -= 4 + length;
      if (!frame) return this.close(new BackendError(`bad frame from ${this.peer}: not a serialized message`, { expected: 'a node:v8 serialized { t, ... } object', found: `${length} bytes` }));
      if (frame.t !== 'ping') this.emit('frame', frame);
    }
  }
}

function decode(body: Buffer): Frame | null {
  try {
    const v = deserialize(body) as unknown;
    return typeof v === 'object' && v !== null && typeof (v as Frame).t === 'string' ? (v as Frame) : null;
  } catch {
    return null;
  }
}
