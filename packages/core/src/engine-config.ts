// The one config object createEngine takes, validated with valibot so that a wrong field produces one
// ConfigError naming the field (dotted path), what was expected and what was found.
import * as v from 'valibot';
import type { KernelBackend, ParallelStrategy, WeightOffload } from './contracts.js';
import type { FloatDType } from './dtype.js';
import { ConfigError } from './errors.js';

export interface EngineLimits {
  /**
   * Bytes of KV cache to allocate (default 256 MiB, capped at what maxSequences × maxContext can use).
   * 'auto' (throughput mode): the device memory the weights leave (engine-sizing.ts).
   */
  kvCacheBytes?: number | 'auto';
  /** Tokens per KV-cache block (default 16). */
  blockSize?: number;
  /** Tokens processed per step, prompt chunks and decode tokens together (default 512). */
  maxBatchTokens?: number;
  /**
   * Sequences running at once (default 64). 'auto' (throughput mode): as many as the KV cache holds at
   * maxContext tokens each, and maxBatchTokens (unless set) at least that many, so a decode step takes them all.
   */
  maxSequences?: number | 'auto';
  /** Longest prompt + generation, at most the model's max_position_embeddings (the default). */
  maxContext?: number;
  /** KV-cache element type: 'auto' (default, exact) or 'fp8' (e4m3, half the bytes of f16; backends that list it). */
  kvCacheDtype?: 'auto' | 'fp8';
  /**
   * Decode steps run as one call where the program chains them (Program.runArgmaxSteps for greedy rows,
   * runSampleSteps for sampled ones without a repetition penalty: the cuda backend, and parallel launches
   * whose ranks can), default 4: the device goes from step to step without waiting for the host. The
   * engine then sees tokens in runs of up to this many, and a request sent meanwhile joins after the run.
   * 1 turns chaining off.
   */
  decodeSteps?: number;
}

export interface EngineConfig {
  /** Path of a Hugging Face model directory (config.json, safetensors, optional tokenizer files). */
  model: string;
  /** The kernel backend that runs the graph, e.g. referenceBackend() from @zinfer/kernels/reference. */
  backend: KernelBackend;
  /** dtype to hold weights in; default: the stored dtype. */
  dtype?: FloatDType;
  limits?: EngineLimits;
  /** Runs the model over several devices, e.g. tensorParallel({ size: 2 }) from @zinfer/parallel. */
  parallel?: ParallelStrategy;
  /** Keeps weights beyond the device's budget in a host or disk tier and streams them in, e.g. weightOffload({...}) from @zinfer/offload. */
  offload?: WeightOffload;
  /** Run steps automatically while requests are pending (default true); false: call engine.step() yourself. */
  autoStep?: boolean;
  /** Progress while weights load: (done, total, weight name). */
  onLoadProgress?: (done: number, total: number, name: string) => void;
}

const positiveInt = v.pipe(v.number(), v.integer(), v.minValue(1));

const backendSchema = v.custom<KernelBackend>(
  (b) => typeof b === 'object' && b !== null && typeof (b as KernelBackend).name === 'string' && typeof (b as KernelBackend).compile === 'function',
  'a KernelBackend object (for example referenceBackend() from @zinfer/kernels/reference)',
);

const parallelSchema = v.custom<ParallelStrategy>(
  (p) => typeof p === 'object' && p !== null && typeof (p as ParallelStrategy).plan === 'function' && typeof (p as ParallelStrategy).launch === 'function' && Number.isInteger((p as ParallelStrategy).ranks),
  'a ParallelStrategy object (for example tensorParallel({ size: 2 }) from @zinfer/parallel)',
);

const offloadSchema = v.custom<WeightOffload>(
  (o) => typeof o === 'object' && o !== null && typeof (o as WeightOffload).place === 'function',
  'a WeightOffload object (for example weightOffload({ tier: "disk" }) from @zinfer/offload)',
);

const schema = v.strictObject({
  model: v.pipe(v.string(), v.minLength(1)),
  backend: backendSchema,
  dtype: v.optional(v.picklist(['f32', 'f16', 'bf16'])),
  limits: v.optional(
    v.strictObject({
      kvCacheBytes: v.optional(v.union([positiveInt, v.literal('auto')])),
      blockSize: v.optional(positiveInt),
      maxBatchTokens: v.optional(positiveInt),
      maxSequences: v.optional(v.union([positiveInt, v.literal('auto')])),
      maxContext: v.optional(positiveInt),
      kvCacheDtype: v.optional(v.picklist(['auto', 'fp8'])),
      decodeSteps: v.optional(v.pipe(positiveInt, v.maxValue(64))),
    }),
  ),
  parallel: v.optional(parallelSchema),
  offload: v.optional(offloadSchema),
  autoStep: v.optional(v.boolean()),
  onLoadProgress: v.optional(v.function()),
});

export function validateEngineConfig(config: unknown): EngineConfig {
  const r = v.safeParse(schema, config);
  if (r.success) {
    const c = config as EngineConfig;
    if (c.offload && c.parallel && !c.parallel.offload) throw new ConfigError('offload together with a parallel strategy is not available yet', { field: 'offload', expected: 'offload or parallel, not both (or dataParallel from @zinfer/parallel, which takes offload)', found: `${c.offload.name} + ${c.parallel.name}` });
    if (c.offload && !c.backend.streaming) throw new ConfigError(`backend ${c.backend.name} cannot stream weights, so it cannot run with offload`, { field: 'offload', expected: 'a backend with streaming support (reference, cpu, cuda)', found: c.backend.name });
    return c;
  }
  const issue = r.issues[0];
  const field = issue.path?.map((p) => String(p.key)).join('.') ?? '(config)';
  throw new ConfigError(`engine config field ${field} is invalid`, { field, expected: issue.expected ?? issue.message, found: issue.received });
}
