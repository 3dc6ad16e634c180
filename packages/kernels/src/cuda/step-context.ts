// What the launch functions of one step see: the GPU, device pointers of values, weights and metadata,
// row counts, the activation dtype and the fusion plan. Built by the program for each run.
import type { FloatDType, OpNode, ValueId, WeightName } from '@zinfer/core';
import type { ProgramCollectives } from './collective-launch.js';
import type { DeviceWeight } from './device-weights.js';
import type { ExecPlan } from './exec-plan.js';
import type { Gpu } from './gpu.js';
import type { MoeTables } from './moe-tables.js';
import type { StepMetadata } from './step-metadata.js';

export interface StepContext {
  gpu: Gpu;
  meta: StepMetadata;
  /** Device address of element `offset` of the uploaded metadata. */
  metaPtr(offset: number): bigint;
  /** Device address of a value (float values: their slot buffer; int values: their metadata part). */
  value(id: ValueId): bigint;
  /** Elements a row of a value. */
  width(id: ValueId): number;
  /** Rows a value holds in this step. */
  rowsOf(id: ValueId): number;
  /** Whether a value is stored as f32 although activations are 16-bit (the graph's output, when a linear makes it). */
  isF32(id: ValueId): boolean;
  weight(name: WeightName): DeviceWeight;
  /** The weight if it stays on the device (not streamed), else null: what a launch may prefetch. */
  maybeWeight(name: WeightName): DeviceWeight | null;
  /** Device f64 inverse frequencies of a rotary node, uploaded at compile time. */
  invFreq(node: OpNode<'rotary'>): bigint;
  /** Scratch device memory of at least `bytes`, valid until the next call (one user at a time). */
  scratch(bytes: number): bigint;
  /** Whether the step is being captured into a graph: nothing may wait for the device or the host. */
  capturing: boolean;
  /** At least `n` int32 counters, zero between uses (the kernels that count reset them). */
  counters(n: number): bigint;
  /** Activation dtype: f32 (parity), f16 or bf16. */
  act: FloatDType;
  /** The rank's device collectives (tensor and pipeline groups), for communication nodes. */
  collectives: ProgramCollectives;
  /** The program's MoE expert tables and routing counters; null for a graph without MoE nodes. */
  moe: MoeTables | null;
  plan: ExecPlan;
  options: ProgramOptions;
}

export interface ProgramOptions {
  /** Use cuBLAS for linear layers over more than 8 rows (default true); false: the tiled kernel. */
  cublas: boolean;
  /** Fixed attention chunk (positions per block); default: adapts to the step. */
  attentionChunk: number | null;
  /** Fill every activation buffer with NaN before each step, so an unwritten element fails a comparison. */
  poison: boolean;
  /** Replay decode steps of up to maxGraphRows rows as CUDA graphs, one per batch-size bucket (default true). */
  graphs: boolean;
  /** Largest decode batch replayed as a graph (default 64). */
  maxGraphRows: number;
  /** The tensor-core prompt attention in 16-bit modes (default true). */
  flash: boolean;
}

/** Threads per block for a loop over `n` elements: a multiple of 32 in [32, max]. */
export function threadsFor(n: number, max = 256): number {
  return Math.min(max, Math.max(32, Math.ceil(n / 32) * 32));
}

/** Bytes of one element of a float dtype. */
export function dtypeBytes(d: FloatDType): number {
  return d === 'f32' ? 4 : 2;
}

/** Bytes rounded up to the 256 that scratch sub-buffers start on. */
export const align256 = (n: number): number => Math.ceil(n / 256) * 256;

/** The grid of a grid-stride elementwise kernel of 256 threads a block over n elements. */
export const flatGrid = (n: number): { x: number } => ({ x: Math.max(1, Math.min(8192, Math.ceil(n / 256))) });

/** Elements of `act` in a 16-byte vector. */
const vecElems = (act: FloatDType): number => 16 / dtypeBytes(act);

/**
 * The grid of an elementwise kernel that moves a 16-byte vector a thread when n is whole vectors (add, the
 * activations: cuda/elementwise.cu), else an element: a thread per item of work (4 or 8 times fewer idle threads).
 */
export const vectorGrid = (n: number, act: FloatDType): { x: number } => flatGrid(n % vecElems(act) === 0 ? n / vecElems(act) : n);

/** NORM_VECS of cuda/norms.cu: the 16-byte vectors a thread of the one-read norm holds. */
export const NORM_VECS = 4;
/**
 * Threads of a norm block over groups of `dim` elements: groups of whole vectors take NORM_VECS a thread (a 4,096
 * f16 row: 128 threads, each with its 4 loads in flight); others the scalar loop's up to 1,024.
 */
export const normThreads = (dim: number, act: FloatDType): number =>
  dim % vecElems(act) === 0 ? threadsFor(Math.ceil(dim / vecElems(act) / NORM_VECS), 1024) : threadsFor(dim, 1024);
