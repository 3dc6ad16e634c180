// The copy work of streamed groups that have arrived: each tensor into its place in the group's slot,
// cut into chunks of about CHUNK_BYTES so the main thread can do a chunk at a time while the workers run
// a kernel (ThreadPool.run's background), and finish the rest when a group is needed. A linear's rows are
// staged into the shared memory (one memcpy) and packed into panels by the k_pack_panels kernel. A group
// is released to the stream as soon as its last chunk is written.
import type { HostTensor } from '@zinfer/core';
import type { WasmHeap } from './heap.js';
import { panelBytes, PANEL } from './pack.js';

/** About 20–50 µs of copying: short enough that a kernel's end is not held up by much. */
export const CHUNK_BYTES = 256 * 1024;

/** Where chunks of rows are staged, the pack kernel's argument block, and how to run it. */
export interface PackIo {
  /** Heap offset of the staging buffer: CHUNK_BYTES or one panel's rows, whichever is larger. */
  staging: number;
  args: number;
  /** Runs k_pack_panels on `args`: over the pool between kernels, on this thread while workers compute. */
  pack(args: number, parallel: boolean): void;
}

interface Chunk {
  group: number;
  tensor: HostTensor;
  /** Heap byte offset of the whole placed tensor. */
  ptr: number;
  packed: boolean;
  /** Panels (packed) or bytes (plain) [from, to). */
  from: number;
  to: number;
  bytes: number;
}

export interface SlotCopy {
  tensor: HostTensor;
  ptr: number;
  packed: boolean;
}

export class SlotCopies {
  private queue: Chunk[] = [];
  private head = 0;
  /** Chunks not yet written, per group. */
  private readonly left = new Map<number, number>();
  /** Bytes queued and not yet written (decides whether a kernel is worth overlapping with copies). */
  pendingBytes = 0;
  /** Bytes written so far, and how many of them while the workers ran a kernel (the overlap achieved). */
  readonly stats = { bytes: 0, overlappedBytes: 0 };

  constructor(private readonly heap: WasmHeap, private readonly io: PackIo, private readonly done: (group: number) => void) {}

  /** Queues a group's tensors; a group with nothing to copy is done at once. */
  add(group: number, copies: readonly SlotCopy[]): void {
    let n = 0;
    for (const c of copies) {
      for (const chunk of chunks(group, c)) {
        this.queue.push(chunk);
        this.pendingBytes += chunk.bytes;
        n++;
      }
    }
    if (n === 0) this.done(group);
    else this.left.set(group, n);
  }

  /** Writes one chunk while the workers run a kernel; false when nothing was queued. Unbound: the pool calls it. */
  readonly background = (): boolean => this.step(true);

  /** Writes chunks until `group` is complete (chunks queued before it first). */
  finish(group: number): void {
    while (this.left.has(group)) if (!this.step(false)) break;
  }

  private step(overlapped: boolean): boolean {
    if (this.head === this.queue.length) return false;
    const c = this.queue[this.head++];
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    if (c.packed) this.pack(c, !overlapped);
    else this.heap.u8.set(new Uint8Array(c.tensor.data.buffer, c.tensor.data.byteOffset + c.from, c.to - c.from), c.ptr + c.from);
    this.pendingBytes -= c.bytes;
    this.stats.bytes += c.bytes;
    if (overlapped) this.stats.overlappedBytes += c.bytes;
    const left = this.left.get(c.group)! - 1;
    if (left > 0) {
      this.left.set(c.group, left);
    } else {
      this.left.delete(c.group);
      this.done(c.group);
    }
    return true;
  }

  /** Panels [from, to) of a linear's weight: its rows staged by one memcpy, then packed in wasm. */
  private pack(c: Chunk, parallel: boolean): void {
    const { tensor, ptr, from, to } = c;
    const [N, K] = tensor.shape;
    const eb = tensor.dtype === 'f32' ? 4 : 2;
    const rows = Math.min(N, to * PANEL) - from * PANEL;
    const src = tensor.data.byteOffset + from * PANEL * K * eb;
    this.heap.u8.set(new Uint8Array(tensor.data.buffer, src, rows * K * eb), this.io.staging);
    const a = this.io.args >>> 2;
    this.heap.i32.set([this.io.staging, ptr + from * panelBytes(tensor.dtype, K), rows, K, eb], a);
    this.io.pack(this.io.args, parallel);
  }

  /** Drops every queued chunk (a failed step); the groups are not reported done. */
  clear(): void {
    this.queue = [];
    this.head = 0;
    this.left.clear();
    this.pendingBytes = 0;
  }
}

function chunks(group: number, { tensor, ptr, packed }: SlotCopy): Chunk[] {
  const out: Chunk[] = [];
  if (packed) {
    const per = panelBytes(tensor.dtype, tensor.shape[1]);
    const panels = Math.ceil(tensor.shape[0] / PANEL);
    const step = Math.max(1, Math.floor(CHUNK_BYTES / per));
    for (let p = 0; p < panels; p += step) out.push({ group, tensor, ptr, packed, from: p, to: Math.min(panels, p + step), bytes: (Math.min(panels, p + step) - p) * per });
    return out;
  }
  const total = tensor.data.byteLength;
  for (let b = 0; b < total; b += CHUNK_BYTES) out.push({ group, tensor, ptr, packed, from: b, to: Math.min(total, b + CHUNK_BYTES), bytes: Math.min(total, b + CHUNK_BYTES) - b });
  return out;
}
