// The peer-memory all-reduce (cuda/peer-allreduce.cu) of one tensor-parallel group: set up once per
// communicator (each rank maps its peers' memory, allocates its registered area, and the areas' addresses
// are exchanged through the group's PeerGroup), then used by the program's allReduce nodes for messages up
// to a threshold; larger ones, and every group where a rank cannot map its peers, stay on NCCL.
//
// Environment (read at set-up; every rank of a process sees the same, so they all choose alike):
//   ZINFER_PEER_ALLREDUCE=0|off|nccl   NCCL for everything (the A/B switch of the benches)
//   ZINFER_PEER_ALLREDUCE_MAX_BYTES    largest message through peer memory (default 512 KiB)
//   ZINFER_PEER_ALLREDUCE_BUFFER_BYTES bytes of each of the two data halves a rank registers (default 2 MiB)
//   ZINFER_PEER_ALLREDUCE_BLOCKS       blocks of every launch (default 32, at most 64 and the SM count)
//   ZINFER_PEER_ALLREDUCE_TWO_SHOT_BYTES  messages of at least this many bytes take the two-shot kernel
//                                      (reduce-scatter + all-gather; same bits); default: never
//   ZINFER_PEER_ALLREDUCE_LL_BYTES     messages up to this many bytes take the Lamport kernel (no barrier: the
//                                      data is its own flag; same sums); default 64 KiB, 0: never. Each rank
//                                      registers 3 generations × ranks slots of this size for it.
//   ZINFER_PEER_PUSH=0|off             row-parallel GEMVs store their outputs in the Lamport slots themselves
//                                      (gemv.cu EPI_PUSH; the all-reduce then only gathers) unless off (A/B)
import { BackendError, ConfigError, type DeviceCollectives, type FloatDType, type PeerGroup } from '@zinfer/core';
import type { Gpu } from './gpu.js';
import { dtypeBytes } from './step-context.js';

/** Must match PEER_SIGNAL_BYTES, PEER_MAX_RANKS and PEER_MAX_BLOCKS of peer-allreduce.cu. */
export const PEER_SIGNAL_BYTES = 8192;
export const PEER_MAX_RANKS = 8;
export const PEER_MAX_BLOCKS = 64;
/** Threads of every launch (the kernel's __launch_bounds__). */
export const PEER_THREADS = 512;
/** LL_SENTINEL of peer-allreduce.cu: every word of the Lamport region starts as (and returns to) it. */
export const LL_SENTINEL = 0x80008000;
/** Generations of the Lamport region (a call's own, its successor's, the one it clears). */
export const LL_GENERATIONS = 3;

/** The kernel of one call: Lamport, one-shot or two-shot. */
export type PeerKernel = 'll' | 1 | 2;

export interface PeerSettings {
  enabled: boolean;
  maxBytes: number;
  halfBytes: number;
  blocks: number;
  /** Messages of at least this many bytes use the two-shot kernel (Infinity: never). */
  twoShotBytes: number;
  /** Messages up to this many bytes use the Lamport kernel (0: never); also the size of each of its slots. */
  llBytes: number;
  /** Row-parallel GEMVs push their outputs into the Lamport slots (linear-launch.ts: peerPush). */
  push: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

export function peerSettings(env: Env = process.env): PeerSettings {
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback; // Infinity only as a fallback ("never")
    const v = Number(raw);
    if (!(Number.isInteger(v) && v >= min && v <= max)) throw new ConfigError(`invalid ${name}`, { field: name, expected: `an integer in [${min}, ${max}]`, found: raw });
    return v;
  };
  const sixteens = (name: string, v: number): number => {
    if (v % 16) throw new ConfigError(`invalid ${name}`, { field: name, expected: 'a multiple of 16', found: String(v) });
    return v;
  };
  const halfBytes = sixteens('ZINFER_PEER_ALLREDUCE_BUFFER_BYTES', int('ZINFER_PEER_ALLREDUCE_BUFFER_BYTES', 2 ** 21, 16, 2 ** 30));
  return {
    enabled: !['0', 'off', 'nccl'].includes((env.ZINFER_PEER_ALLREDUCE ?? '').toLowerCase()),
    maxBytes: Math.min(int('ZINFER_PEER_ALLREDUCE_MAX_BYTES', 2 ** 19, 0, 2 ** 30), halfBytes),
    halfBytes,
    blocks: int('ZINFER_PEER_ALLREDUCE_BLOCKS', 32, 1, PEER_MAX_BLOCKS),
    twoShotBytes: int('ZINFER_PEER_ALLREDUCE_TWO_SHOT_BYTES', Infinity, 0, 2 ** 30),
    llBytes: sixteens('ZINFER_PEER_ALLREDUCE_LL_BYTES', int('ZINFER_PEER_ALLREDUCE_LL_BYTES', 2 ** 16, 0, 2 ** 24)),
    push: !['0', 'off'].includes((env.ZINFER_PEER_PUSH ?? '').toLowerCase()),
  };
}

/** Bytes a message takes in the kernels' 16-byte vectors. */
const padded16 = (bytes: number): number => Math.ceil(bytes / 16) * 16;

/** One rank's handle on its group's registered areas. */
export class PeerAllReduce {
  constructor(
    readonly rank: number,
    readonly size: number,
    /** Device array of every rank's area address, in rank order (on this rank's device). */
    readonly table: bigint,
    readonly settings: PeerSettings,
    /** Blocks of every launch: fixed, which the kernel's epoch protocol relies on. */
    readonly blocks: number,
  ) {}

  /** Whether `count` elements of `dtype` go through peer memory (else NCCL). */
  fits(count: number, dtype: FloatDType): boolean {
    const bytes = count * dtypeBytes(dtype);
    return count > 0 && bytes <= this.settings.maxBytes && padded16(bytes) <= this.settings.halfBytes;
  }

  /** The kernel a message of `count` elements takes by default: Lamport up to llBytes, two-shot from twoShotBytes. */
  kernelFor(count: number, dtype: FloatDType): PeerKernel {
    const bytes = count * dtypeBytes(dtype);
    if (padded16(bytes) <= this.settings.llBytes) return 'll';
    return bytes >= this.settings.twoShotBytes ? 2 : 1;
  }

  /**
   * out = Σ over ranks of x (+ residual, unless 0n: the add after a row-parallel projection, rounded as two
   * launches would), enqueued on the Gpu's stream (capturable: the epochs live on the device).
   * `kernel`: which one (default kernelFor); all give the same sums (Lamport: a -0 sum is +0).
   * x 0n (Lamport only): the kernel before it pushed x into the slots already (pushArgs).
   */
  launch(gpu: Gpu, out: bigint, x: bigint, count: number, dtype: FloatDType, kernel?: PeerKernel, residual = 0n): void {
    const bytes = count * dtypeBytes(dtype);
    if (!this.fits(count, dtype)) throw new BackendError(`peer all-reduce of ${count} ${dtype} exceeds its buffers (callers check fits())`, { expected: `at most ${this.settings.maxBytes} bytes`, found: `${bytes} bytes` });
    const k = kernel ?? this.kernelFor(count, dtype);
    if (x === 0n && k !== 'll') throw new BackendError('only the Lamport all-reduce takes pushed input (x null)', { expected: "kernel 'll'", found: String(k) });
    const args = [out, x, this.table, count, this.rank, this.size, this.settings.halfBytes];
    if (k === 'll') {
      if (padded16(bytes) > this.settings.llBytes) throw new BackendError(`Lamport all-reduce of ${bytes} bytes exceeds its slots`, { expected: `at most ${this.settings.llBytes} bytes`, found: `${bytes} bytes` });
      gpu.launch(`peer_all_reduce_ll_${dtype}`, { x: this.blocks }, PEER_THREADS, [...args, this.settings.llBytes, residual]);
    } else gpu.launch(`peer_all_reduce_${k === 2 ? '2s_' : ''}${dtype}`, { x: this.blocks }, PEER_THREADS, [...args, residual]);
  }

  /** The GEMV arguments of a push into this group's Lamport slots (gemv.cu: llTable .. llSlotBytes). */
  pushArgs(): [bigint, number, number, number, number] {
    return [this.table, this.rank, this.size, this.settings.halfBytes, this.settings.llBytes];
  }
}

export interface PeerSetup {
  /** Null: the group stays on NCCL. */
  reduce: PeerAllReduce | null;
  /** Why (for logs and benches). */
  reason: string;
}

const setups = new WeakMap<DeviceCollectives, Promise<PeerSetup>>();

/**
 * The group's peer all-reduce, set up on the first call for these collectives and shared by every later
 * program of the rank. Every rank of the group must call it (its exchange is a collective) unless none does:
 * without `peers`, with one rank, more than PEER_MAX_RANKS, or with ZINFER_PEER_ALLREDUCE off.
 * The registered memory lives as long as the process: a peer may still read it after this rank is done.
 */
export function peerAllReduceFor(gpu: Gpu, collectives: DeviceCollectives | null, env: Env = process.env): Promise<PeerSetup> {
  const peers = collectives?.peers;
  if (!collectives || !peers) return Promise.resolve({ reduce: null, reason: 'the communicator offers no peer group' });
  const settings = peerSettings(env);
  if (!settings.enabled) return Promise.resolve({ reduce: null, reason: 'ZINFER_PEER_ALLREDUCE is off' });
  const n = peers.devices.length;
  if (n < 2 || n > PEER_MAX_RANKS) return Promise.resolve({ reduce: null, reason: `${n} ranks (peer memory serves 2..${PEER_MAX_RANKS})` });
  let setup = setups.get(collectives);
  if (!setup) {
    setup = setupPeerAllReduce(gpu, peers, settings);
    setups.set(collectives, setup);
  }
  return setup;
}

/** Maps the peers, registers this rank's area and exchanges the areas (a collective over the group). */
export async function setupPeerAllReduce(gpu: Gpu, peers: PeerGroup, settings: PeerSettings): Promise<PeerSetup> {
  const memory = gpu.peerMemory?.() ?? null;
  let area = 0n;
  let why = '';
  try {
    if (!memory) why = 'the GPU offers no peer memory';
    else if (memory.ordinal !== peers.devices[peers.rank]) why = `rank ${peers.rank} runs on device ${memory.ordinal}, its group lists device ${peers.devices[peers.rank]}`;
    else {
      const blocked = peers.devices.filter((d) => !memory.canAccess(d));
      if (blocked.length) why = `device ${memory.ordinal} cannot map device ${blocked.join(', ')}`;
      else {
        for (const d of peers.devices) memory.enableAccess(d);
        const ll = LL_GENERATIONS * peers.devices.length * settings.llBytes;
        area = memory.alloc(PEER_SIGNAL_BYTES + 2 * settings.halfBytes + ll, 'the peer all-reduce area');
        gpu.fill32(area, 0, PEER_SIGNAL_BYTES / 4); // epochs and flags start at 0; zeroed before any peer knows the address
        if (ll) gpu.fill32(area + BigInt(PEER_SIGNAL_BYTES + 2 * settings.halfBytes), LL_SENTINEL, ll / 4); // every Lamport slot empty
        gpu.synchronize();
      }
    }
  } catch (e) {
    why = (e as Error).message;
    if (area) memory!.free(area);
    area = 0n;
  }
  const local = Math.min(settings.blocks, gpu.multiprocessors);
  const all = await peers.exchange([area, BigInt(local)]);
  const areas = all.map((v) => v[0]); // 0: that rank cannot take part
  const missing = areas.flatMap((a, r) => (a === 0n ? [r] : []));
  if (missing.length) {
    if (area) memory!.free(area);
    return { reduce: null, reason: why || `rank ${missing.join(', ')} of the group cannot share peer memory` };
  }
  const table = memory!.alloc(8 * areas.length, 'the peer all-reduce table');
  gpu.upload(table, BigUint64Array.from(areas));
  gpu.synchronize();
  const blocks = Number(all.reduce((m, v) => (v[1] < m ? v[1] : m), BigInt(local))); // one grid on every rank
  return { reduce: new PeerAllReduce(peers.rank, areas.length, table, settings, blocks), reason: `peer memory over devices ${peers.devices.join(', ')}` };
}
