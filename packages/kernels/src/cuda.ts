// The CUDA kernel backend: the driver API, NVRTC and cuBLAS called through koffi (no native build step),
// kernels kept as CUDA C++ sources in the package's cuda/ folder, compiled at run time for the GPU found
// and cached on disk. Activations are f32 (the parity mode), f16 or bf16 ('auto': the dtype the model's
// matrices are stored in), always accumulated in f32 inside kernels; decode steps run fused GEMVs and
// replay CUDA graphs. With offload, compile takes a weight stream: those layers are copied into device
// slots on a second stream while the step runs (streamed-weights.ts), from pinned memory that allocHost
// gives the offload tiers (host-memory.ts: it lives while its ArrayBuffer does, or until freeHost).
import { CONTRACT_VERSION, type KernelBackend, type KvCacheDtype } from '@zinfer/core';
import type { CudaProgram } from './cuda/program.js';
import { parseChoice } from './cuda/env-choice.js';
import { compileProgram, kvCacheBytesPerBlock, parseKvCacheDtype } from './cuda/compile.js';
import { plannedActivations } from './cuda/activation-dtype.js';
import type { ActivationChoice } from './cuda/device-weights.js';
import { CudaDevice } from './cuda/device.js';
import { HostMemory } from './cuda/host-memory.js';
import { devicePinnedAllocator } from './cuda/numa-host.js';
import { probeCuda } from './cuda/probe.js';
import { CudaStream } from './cuda/stream.js';
import { supports } from './cuda/supports.js';

export interface CudaBackendOptions {
  /** CUDA device ordinal (default 0). */
  device?: number;
  /**
   * Activation (and KV-cache) dtype: 'f32' is the parity mode; 'f16' / 'bf16' hold matrices in that dtype
   * too (converted at upload when stored otherwise); 'auto' (default) takes the dtype the matrices are
   * stored in, f16 or bf16, else f32. With 'auto', kvBytesPerBlock reads the stored dtype from the weight
   * source's headers (WeightSource.dtypeOf, which the engine's model weights have); a source without it
   * gets f32 sizes, so the cache then uses up to half its byte budget.
   */
  activations?: ActivationChoice;
  /** Where compiled CUBINs are cached (default $ZINFER_CUDA_CACHE_DIR or ~/.cache/zinfer/cuda); null: no cache. */
  cacheDir?: string | null;
  /** cuBLAS for linear layers over more than 8 rows (default true); false uses zinfer's tiled kernel. */
  cublas?: boolean;
  /** Fixed attention chunk in positions (default: adapts to the step); for tests of the split paths. */
  attentionChunk?: number;
  /** Fill activation buffers with NaN before each step, so unwritten outputs fail comparisons (tests). */
  poison?: boolean;
  /** Replay decode steps as CUDA graphs, one per batch-size bucket (default true). */
  graphs?: boolean;
  /** Largest decode batch replayed as a graph (default 64; batches over 8 rows capture cuBLAS calls too). */
  maxGraphRows?: number;
  /** Fuse norms, q/k/v and epilogues into the decode GEMVs, and rotary into the KV write (default true). */
  fusion?: boolean;
  /** The tensor-core prompt attention in 16-bit modes (default true). */
  flash?: boolean;
  /**
   * Programmatic dependent launch on sm_90: each kernel may start (a GEMV streaming its weights) during the
   * previous one's tail (default true: on an H100 the 7B-shape batch-1 decode took 5.343 ms/token with it
   * against 5.543 without, once the decode attention had taken in the rotary kernel; before that it measured
   * within noise. Every kernel supports it, and gpu-check runs conformance both ways). Ignored before sm_90.
   */
  pdl?: boolean;
  /**
   * The KV cache's element type: 'auto' (default) the activation dtype, exact; 'fp8' e4m3, one byte an
   * element, unscaled (a per-tensor scale of 1: values round to 3 mantissa bits and saturate at ±448;
   * cuda/fp8.cuh). Halves the cache's bytes in the 16-bit modes, so batch decode reads half the K/V and the
   * same budget holds twice the tokens; kvBytesPerBlock reports it. Prompt attention then takes the
   * general kernel rather than the flash one. Logits move by fp8's rounding (tested against the reference
   * within the tolerance in test/cuda-fp8.test.ts and scripts/gpu-fp8-check.mjs).
   */
  kvCacheDtype?: KvCacheDtype;
}

/** The cuda backend, with the programs it compiled (their stats: graph captures, replays, errors). */
export interface CudaKernelBackend extends KernelBackend {
  readonly programs: readonly CudaProgram[];
  readonly streaming: true;
  /** Page-locked host memory (cuMemHostAlloc, portable): streamed copies from it run asynchronously. */
  allocHost(bytes: number): ArrayBuffer;
  /** Frees an allocHost block now rather than when it is garbage collected; no view of it may be used after. */
  freeHost(buffer: ArrayBuffer): void;
  /** Pinned bytes held now (allocHost blocks and streamed programs' staging). */
  readonly hostBytes: number;
}

export function cudaBackend(opts: CudaBackendOptions = {}): CudaKernelBackend {
  const ordinal = opts.device ?? 0;
  const activations = opts.activations ?? 'auto';
  const kvCacheDtype = parseKvCacheDtype(opts.kvCacheDtype);
  const programs: CudaProgram[] = [];
  let host: HostMemory | null = null;
  const hostMemory = () => {
    if (host) return host;
    const device = CudaDevice.open(ordinal);
    return (host = new HostMemory(devicePinnedAllocator(device.driver, ordinal, () => device.enter())));
  };
  return {
    programs,
    name: 'cuda',
    streaming: true,
    allocHost: (bytes) => hostMemory().alloc(bytes),
    freeHost: (buffer) => hostMemory().free(buffer),
    get hostBytes() {
      return host?.bytes ?? 0;
    },
    contractVersion: CONTRACT_VERSION,
    probe: () => probeCuda(ordinal),
    supports,
    // fp8 from this option or from the engine's limits.kvCacheDtype (passed here and in compile's kvCache.dtype).
    kvBytesPerBlock: (graph, blockSize, weights, dtype) =>
      kvCacheBytesPerBlock(graph.kv, blockSize, kvCacheDtype === 'fp8' || dtype === 'fp8' ? 1 : (plannedActivations(graph, activations, weights) ?? 'f32') === 'f32' ? 4 : 2),
    kvCacheDtypes: ['auto', 'fp8'],
    // Parallel ranks: one GPU each (device + rank), collectives through NCCL on the program's stream.
    factory: { module: '@zinfer/kernels/cuda', exportName: 'cudaBackend', options: { ...opts } },
    deviceCollectives: 'nccl',
    async compile(graph, weights, options) {
      const gpu = new CudaStream(CudaDevice.open(ordinal), { cublas: opts.cublas, cacheDir: opts.cacheDir, pdl: opts.pdl ?? true });
      const program = await compileProgram(gpu, graph, weights, options, {
        activations,
        cublas: opts.cublas ?? true,
        attentionChunk: opts.attentionChunk ?? null,
        poison: opts.poison ?? false,
        graphs: opts.graphs ?? true,
        maxGraphRows: opts.maxGraphRows ?? 64,
        flash: opts.flash ?? true,
        // ZINFER_REDUCE_ADD=off: the residual add after an all-reduce as its own launch again (the bench's A/B).
        fusion: { linear: opts.fusion ?? true, rope: opts.fusion ?? true, reduceAdd: (opts.fusion ?? true) && parseChoice(process.env.ZINFER_REDUCE_ADD, ['on', 'off'], 'on', 'ZINFER_REDUCE_ADD') === 'on' },
        kvCache: kvCacheDtype,
        ...(options.stream ? { host: hostMemory() } : {}),
        pinned: hostMemory,
      });
      programs.push(program);
      return program;
    },
  };
}

export { CudaProgram, type ProgramStats } from './cuda/program.js';
export { probeFailure } from './cuda/probe.js';
export { cudaDiagnostics, type CudaDiagnostics } from './cuda/diagnostics.js';
export { findLibrary, findIncludeDir, searchDirs, type CudaLibrary } from './cuda/libraries.js';
export { cudaMicrobench, type MicrobenchResult } from './cuda/microbench.js';
export { loadsBeforeWaits, PRE_WAIT_RULES, preWaitViolations, type PreWaitRule, type WaitLoads } from './cuda/sass-audit.js';
export { profileStep, summarizeProfile, gemvShape, type KernelTiming, type ProfileRow } from './cuda/kernel-profile.js';
export { decodeRecords, KernelTrace, summarizeTrace, traceBuild, type TraceRecord, type TraceRow, type TraceSummary } from './cuda/kernel-trace.js';
export { autoGemvVariant, GEMV_KERNEL_VARIANTS, GEMV_NARROW_MODES, GEMV_VARIANTS, gemvNarrow, gemvVariant, gemvVariantByEpilogue, gemvWarpMaxIn, setGemvNarrow, setGemvVariant, setGemvVariantByEpilogue, setGemvWarpMaxIn, type GemvEpilogue, type GemvKernelVariant, type GemvNarrowMode, type GemvVariant } from './cuda/gemv-variant.js';
export { DECODE_ATTENTION_ENTRIES, DECODE_ATTENTION_VARIANTS, decodeAttentionVariant, setDecodeAttentionVariant, type DecodeAttentionVariant } from './cuda/decode-attention-variant.js';
export { densePassRows, setMoeDensePassBytes } from './cuda/moe-dense.js';
export { MOE_GROUPED_LAYOUTS, moeGroupedLayout, setMoeGroupedPassBytes } from './cuda/moe-grouped-gemm.js';
export { MOE_PREFILL_MODES, moePrefill, moeStepPath, type MoePrefillMode } from './cuda/moe-prefill.js';
export { DECODE_CLUSTER_MODES, DECODE_SPLIT_MODES, decodeClustersMode, decodeSplitsMode, setDecodeCluster, setDecodeSplits, type DecodeClusterMode, type DecodeSplitMode } from './cuda/attention-launch.js';
export { BATCHED_GEMM_MODES, batchedGemmMode, setBatchedGemmMode, type BatchedGemmMode } from './cuda/batched-gemm.js';
export { L2_PREFETCH_MODES, l2Prefetch, setL2Prefetch, type L2PrefetchMode } from './cuda/l2-prefetch.js';
export { SAMPLE_CLUSTER_MODES, sampleClusterBlocks, sampleClusterMode, setSampleClusterMode, type SampleClusterMode } from './cuda/sample-launch.js';
export { pinnedCopyProbe, type H2dProbeResult } from './cuda/h2d-probe.js';
export type { StreamStats } from './cuda/streamed-weights.js';
// The peer-memory all-reduce and what scripts/gpu-allreduce-check.mjs drives it with (a device and a stream).
export { PeerAllReduce, peerAllReduceFor, peerSettings, setupPeerAllReduce, type PeerSettings, type PeerSetup } from './cuda/peer-allreduce.js';
export { CudaDevice } from './cuda/device.js';
export { CudaStream } from './cuda/stream.js';
