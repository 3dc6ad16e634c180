// The one shared WebAssembly.Memory of a program: weights (in their stored dtype), the KV cache,
// per-thread scratch and argument blocks are placed once at compile time by a bump allocator; the
// step's activations live in an arena after them that grows (memory.grow) with the batch.
import { BackendError } from '@zinfer/core';
import { requireWasm, type WasmMemory } from './wasm-api.js';

export const PAGE = 65536;
/** wasm32 addresses 4 GiB: the most weights + KV cache + activations a cpu program can hold. */
export const MAX_PAGES = 65536;
export const MAX_BYTES = MAX_PAGES * PAGE;
/** Alignment of every region: a cache line, so threads writing neighbouring regions do not share one. */
export const ALIGN = 64;
/** Kept free past every region: vector loads of a last partial group may read a few bytes past it. */
export const SLACK = 64;

export const alignUp = (n: number, a = ALIGN): number => Math.ceil(n / a) * a;

export class WasmHeap {
  readonly memory: WasmMemory;
  private top = PAGE; // the first page stays unused: a zero pointer means "none" in kernel arguments
  private views: { buffer: SharedArrayBuffer; f32: Float32Array; i32: Int32Array; u16: Uint16Array; u8: Uint8Array } | null = null;

  constructor(initialBytes = 4 * PAGE) {
    this.memory = new (requireWasm().Memory)({ initial: Math.ceil(initialBytes / PAGE), maximum: MAX_PAGES, shared: true });
  }

  /** End of the persistent regions: where the activation arena starts. */
  get end(): number {
    return this.top;
  }

  /** A persistent region of `bytes`, aligned; `what` names it in the error when 4 GiB is exceeded. */
  alloc(bytes: number, what: string): number {
    const at = alignUp(this.top);
    this.ensure(at + bytes + SLACK, what);
    this.top = at + alignUp(bytes + SLACK);
    return at;
  }

  /** Makes [0, end) addressable, growing the memory. */
  ensure(end: number, what: string): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    if (end > MAX_BYTES) {
      throw new BackendError(`the cpu backend cannot hold ${what}: its WebAssembly memory is limited to 4 GiB (wasm32)`, {
        expected: `at most ${MAX_BYTES} bytes of weights, KV cache and activations`, found: `${end} bytes needed`,
      });
    }
    try {
      this.memory.grow(Math.ceil((end - have) / PAGE));
    } catch (e) {
      throw new BackendError(`the cpu backend could not grow its memory to ${end} bytes for ${what} (${String(e)})`);
    }
  }

  private current() {
    const buffer = this.memory.buffer;
    if (this.views?.buffer !== buffer) {
      this.views = { buffer, f32: new Float32Array(buffer), i32: new Int32Array(buffer), u16: new Uint16Array(buffer), u8: new Uint8Array(buffer) };
    }
    return this.views;
  }

  get f32(): Float32Array {
    return this.current().f32;
  }

  get i32(): Int32Array {
    return this.current().i32;
  }

  get u16(): Uint16Array {
    return this.current().u16;
  }

  get u8(): Uint8Array {
    return this.current().u8;
  }
}
