// Emulated GPUs with real host memory behind their device pointers, for the launch code around NCCL
// (the MoE all-to-all): each rank's launches of the copy_* / add_* kernels and its collectives are queued,
// then run in lock-step across the ranks, with allToAll / allGather moving bytes between the ranks' memories
// as NCCL does. Only the kernels the exchange uses are implemented; any other launch fails loudly.
import { BackendError, type DeviceCollectives, type FloatDType } from '@zinfer/core';
import type { DeviceRange, Dim3, Gpu, KernelArg } from '../../src/cuda/gpu.js';
import { loadKernelSources, type KernelSignature } from '../../src/cuda/kernel-sources.js';
import { checkLaunch } from '../../src/cuda/launch.js';

const BYTES: Record<FloatDType, number> = { f32: 4, f16: 2, bf16: 2 };

type Collective =
  | { kind: 'allToAll'; send: bigint; recv: bigint; sendCounts: readonly number[]; recvCounts: readonly number[]; dtype: FloatDType }
  | { kind: 'allGather'; send: bigint; recv: bigint; count: number; dtype: FloatDType };

type Step = { local: () => void } | { collective: Collective };

let kernels: ReadonlyMap<string, KernelSignature> | null = null;

/** One rank's device: allocations are host byte arrays; launches and collectives wait in `queue`. */
export class EmulatedGpu {
  readonly queue: Step[] = [];
  private readonly memory = new Map<bigint, Uint8Array>();
  private next = 0x7f0000000000n;

  alloc(bytes: number): bigint {
    const ptr = this.next;
    this.next += BigInt(Math.ceil(bytes / 256) * 256 + 256);
    const mem = new Uint8Array(bytes);
    mem.fill(0xff); // poison: all-ones bytes are NaN in f32, f16 and bf16 alike, so a stale read shows
    this.memory.set(ptr, mem);
    return ptr;
  }

  /** The bytes [ptr, ptr + bytes), which must lie inside one allocation. */
  bytes(ptr: bigint, bytes: number, what: string): Uint8Array {
    for (const [base, mem] of this.memory) {
      if (ptr < base || ptr >= base + BigInt(mem.length)) continue;
      const at = Number(ptr - base);
      if (at + bytes > mem.length) throw new BackendError(`${what}: ${bytes} bytes at 0x${ptr.toString(16)} overrun the allocation (${mem.length - at} left)`);
      return mem.subarray(at, at + bytes);
    }
    if (bytes === 0) return new Uint8Array(0);
    throw new BackendError(`${what}: pointer 0x${ptr.toString(16)} is in no allocation`);
  }

  read(ptr: bigint, n: number, dtype: FloatDType): Float32Array {
    return decode(this.bytes(ptr, n * BYTES[dtype], 'read'), dtype);
  }

  write(ptr: bigint, values: ArrayLike<number>, dtype: FloatDType): void {
    this.bytes(ptr, values.length * BYTES[dtype], 'write').set(encode(Float32Array.from(values), dtype));
  }

  /** The Gpu the launch code sees: launch and external only (what the exchange calls). */
  asGpu(): Gpu {
    const gpu = {
      launch: (kernel: string, grid: Dim3, block: number, args: readonly KernelArg[]) => this.launch(kernel, grid, block, args),
      external: (what: string, buffers: readonly DeviceRange[], enqueue: (stream: bigint) => void) => {
        for (const b of buffers) this.bytes(b.ptr, b.bytes, what);
        enqueue(1n);
      },
    };
    return gpu as unknown as Gpu;
  }

  /** Device collectives whose calls join the queue, to run against the other ranks' queues. */
  collectives(): DeviceCollectives {
    const none = () => {
      throw new BackendError('the exchange emulator implements allToAll and allGather only');
    };
    return {
      library: 'emulated',
      allReduce: none, send: none, recv: none,
      allGather: (send, recv, count, dtype) => void this.queue.push({ collective: { kind: 'allGather', send, recv, count, dtype } }),
      allToAll: (send, recv, sendCounts, recvCounts, dtype) => void this.queue.push({ collective: { kind: 'allToAll', send, recv, sendCounts: [...sendCounts], recvCounts: [...recvCounts], dtype } }),
    };
  }

  private launch(kernel: string, grid: Dim3, block: number, args: readonly KernelArg[]): void {
    kernels ??= loadKernelSources().kernels;
    const sig = kernels.get(kernel);
    if (!sig) throw new BackendError(`no CUDA kernel named ${kernel}`);
    checkLaunch(sig, grid, block, args);
    const m = /^(copy|add)_(f32|f16|bf16)$/.exec(kernel);
    if (!m) throw new BackendError(`the exchange emulator does not implement ${kernel}`);
    const dtype = m[2] as FloatDType;
    const [y, a, b] = args as bigint[];
    const n = args[args.length - 1] as number;
    this.queue.push({
      local: () => {
        const va = this.read(a, n, dtype);
        if (m[1] === 'add') {
          const vb = this.read(b, n, dtype);
          for (let i = 0; i < n; i++) va[i] += vb[i];
        }
        this.write(y, va, dtype);
      },
    });
  }
}

/** Runs every rank's queue: local work up to the next collective, then that collective on all ranks at once. */
export function runRanks(gpus: readonly EmulatedGpu[]): void {
  const at = gpus.map(() => 0);
  for (;;) {
    gpus.forEach((g, r) => {
      while (at[r] < g.queue.length && 'local' in g.queue[at[r]]) (g.queue[at[r]++] as { local: () => void }).local();
    });
    const done = gpus.map((g, r) => at[r] === g.queue.length);
    if (done.every(Boolean)) return;
    if (done.some(Boolean)) throw new BackendError(`ranks ${done.map((d, r) => (d ? r : -1)).filter((r) => r >= 0)} finished while others wait in a collective`);
    const calls = gpus.map((g, r) => (g.queue[at[r]++] as { collective: Collective }).collective);
    runCollective(gpus, calls);
  }
}

function runCollective(gpus: readonly EmulatedGpu[], calls: Collective[]): void {
  const kinds = new Set(calls.map((c) => `${c.kind} ${c.dtype}`));
  if (kinds.size !== 1) throw new BackendError(`ranks disagree on the collective: ${[...kinds].join(' / ')}`);
  // Read every send buffer before any write (NCCL's buffers of one call must not overlap anyway).
  const plans = calls.map((c, s) => transfers(c, s, calls));
  const moves = plans.flat().map((t) => ({ ...t, data: gpus[t.from].bytes(t.src, t.bytes, 'collective send').slice() }));
  for (const t of moves) gpus[t.to].bytes(t.dst, t.bytes, 'collective receive').set(t.data);
}

interface Transfer {
  from: number;
  to: number;
  src: bigint;
  dst: bigint;
  bytes: number;
}

/** What rank s sends in one collective, with where each block lands on its receiver. */
function transfers(c: Collective, s: number, calls: Collective[]): Transfer[] {
  const b = BYTES[c.dtype];
  if (c.kind === 'allGather') return calls.map((d, to) => ({ from: s, to, src: c.send, dst: d.recv + BigInt(s * c.count * b), bytes: c.count * b }));
  const sum = (xs: readonly number[], end: number) => xs.slice(0, end).reduce((p, q) => p + q, 0);
  return calls.map((d, to) => {
    const recv = (d as typeof c).recvCounts;
    if (recv[s] !== c.sendCounts[to]) throw new BackendError(`allToAll: rank ${s} sends ${c.sendCounts[to]} to rank ${to}, which expects ${recv[s]}`);
    overlapCheck(c, s);
    return { from: s, to, src: c.send + BigInt(sum(c.sendCounts, to) * b), dst: d.recv + BigInt(sum(recv, s) * b), bytes: c.sendCounts[to] * b };
  });
}

function overlapCheck(c: Extract<Collective, { kind: 'allToAll' }>, rank: number): void {
  const b = BigInt(BYTES[c.dtype]);
  const sendEnd = c.send + BigInt(c.sendCounts.reduce((p, q) => p + q, 0)) * b;
  const recvEnd = c.recv + BigInt(c.recvCounts.reduce((p, q) => p + q, 0)) * b;
  if (c.send < recvEnd && c.recv < sendEnd) throw new BackendError(`allToAll on rank ${rank}: send and receive buffers overlap`);
}

function decode(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  const copy = bytes.slice();
  if (dtype === 'f32') return new Float32Array(copy.buffer);
  const half = new Uint16Array(copy.buffer);
  return Float32Array.from(half, (h) => (dtype === 'bf16' ? bf16ToF32(h) : f16ToF32(h)));
}

function encode(values: Float32Array, dtype: FloatDType): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(values.buffer.slice(0));
  const half = Uint16Array.from(values, (v) => (dtype === 'bf16' ? f32ToBf16(v) : f32ToF16(v)));
  return new Uint8Array(half.buffer);
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

function bf16ToF32(h: number): number {
  U32[0] = h << 16;
  return F32[0];
}

function f32ToBf16(v: number): number {
  F32[0] = v;
  return (U32[0] + 0x7fff + ((U32[0] >>> 16) & 1)) >>> 16; // round to nearest even
}

function f16ToF32(h: number): number {
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (e === 0) return sign * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : sign * Infinity;
  return sign * (1 + f / 1024) * 2 ** (e - 15);
}

/** f32 → f16 for the values the tests use (exact small integers, NaN, ±Infinity). */
function f32ToF16(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | (Math.round((a / 2 ** e - 1) * 1024) & 0x3ff);
}
