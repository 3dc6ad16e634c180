// Attention: the step's k and v into the paged cache (with q and k rotated in the same kernel when the
// graph's rotary nodes feed only this attention), then one of three kernels:
//   - decode steps (one row per sequence): attn_decode alone, which also rotates q and k and writes the
//     step's k and v into the cache, split across the context with the splits merged in the same launch
//     (in thread-block clusters: decodeCluster); grid and arguments depend only on the batch size, so graphs
//     replay it. It can ask L2 for the next GEMV's weights while it runs (l2-prefetch.ts; off by default);
//   - prompt rows in the 16-bit modes: the tensor-core flash kernel;
//   - otherwise (f32 parity mode, odd head sizes, an fp8 cache): attention_partial + attention_reduce.
// With the opt-in fp8 cache (KvPointers.fp8) the writes round to e4m3 and the reads widen from it: the
// `_e4m3` entry points of rotary.cu and attention.cu (cuda/fp8.cuh says how).
import type { FloatDType, Graph, OpNode } from '@zinfer/core';
import { decodeAttentionKernel, decodeAttentionVariant, pipelined, type DecodeAttentionVariant } from './decode-attention-variant.js';
import { EnvChoice } from './env-choice.js';
import type { RopeKv } from './exec-plan.js';
import { prefetchOf } from './l2-prefetch.js';
import { threadsFor, type StepContext } from './step-context.js';

const TARGET_CHUNKS = 16;
const MIN_CHUNK = 4;
const ATT_THREADS = 128; // ATT_THREADS in cuda/attention.cu
const DEC_THREADS = 128; // DEC_THREADS in cuda/attention.cu
const ATT_MAX_HEAD_DIM = 256; // ATT_MAX_HEAD_DIM in cuda/attention.cu (its shared q, k and v of a head)
const FA_THREADS = 128; // FA_THREADS in cuda/flash.cu
/** Head sizes the flash kernel is compiled for (FLASH_DIMS in cuda/flash.cu). */
export const FLASH_HEAD_DIMS = [16, 32, 64, 80, 96, 128];
/** Positions a decode split takes at least, and the most splits (DEC_MAX_SPLITS in cuda/attention.cu: the merge takes a lane a split). */
const DECODE_MIN_CHUNK = 32;
const DECODE_MAX_SPLITS = 32;
/** Decode rows from which an f16/bf16 cache is read by the wide attention (decodeWide). */
export const DECODE_WIDE_FROM_ROWS = 16;
/** Rows from which rope_kv takes a block per row rather than per head. */
const ROPE_ROWS_PER_BLOCK_FROM = 64;

/** Device K and V of each layer: [slots, kvHeads*headDim] in the activation dtype, or e4m3 when fp8. */
export interface KvPointers {
  k(layer: number): bigint;
  v(layer: number): bigint;
  blockSize: number;
  /** The cache holds fp8 (e4m3, unscaled) rather than the activation dtype. */
  fp8?: boolean;
}

/** The chunk size and chunk count for rows at `positions` with an optional window (the general path). */
export function attentionChunks(positions: Int32Array, window: number | null, fixedChunk: number | null): { chunk: number; chunks: number } {
  let span = 1;
  for (const p of positions) span = Math.max(span, window === null ? p + 1 : Math.min(p + 1, window));
  const chunk = fixedChunk ?? Math.max(MIN_CHUNK, Math.ceil(span / TARGET_CHUNKS));
  return { chunk, chunks: Math.ceil(span / chunk) };
}

/**
 * Whether every attention of a graph runs as attn_decode in decode steps. The general path's grid depends
 * on the contexts, so a decode graph holding it would replay a stale grid: such programs run decode eagerly.
 */
export function decodeAttentionFits(graph: Graph, act: FloatDType, fp8: boolean): boolean {
  return graph.nodes.every((n) => n.op !== 'attention' || decodeLanes(n.attrs.headDim, act, fp8) > 0);
}

/**
 * Lanes per cached position in attn_decode (a power of two ≤ 32), or 0 when the head size does not fit. A
 * lane takes 8 elements of each position of an f16/bf16 cache (one 16-byte load), 16 in the wide entries
 * (two) and of an fp8 cache (one), 4 in the f32 parity mode (VEC in cuda/attention.cu); heads a multiple of
 * 8 (a wide lane may take half), of 16 with an fp8 cache (whole 16-byte loads), of 4 in f32.
 */
export function decodeLanes(headDim: number, act: FloatDType, fp8: boolean, wide = false): number {
  const vec = act === 'f32' ? 4 : fp8 || wide ? 16 : 8;
  const unit = act === 'f32' ? 4 : fp8 ? 16 : 8;
  if (headDim % unit !== 0 || headDim > 32 * vec || headDim > ATT_MAX_HEAD_DIM) return 0;
  let lanes = 1;
  while (lanes * vec < headDim) lanes *= 2;
  return lanes;
}

/**
 * Whether a decode step of `rows` rows takes the wide attention (16 elements a lane): from
 * DECODE_WIDE_FROM_ROWS rows of an f16/bf16 cache with the pipelined variant. At batch 64 it read K/V at
 * 3.7 TB/s against the 8-wide kernel's 3.1 (H200); at batch 1 the graphed 7B step lost 0.4 ms with it.
 */
export function decodeWide(rows: number, act: FloatDType, fp8: boolean, variant: DecodeAttentionVariant = decodeAttentionVariant()): boolean {
  return rows >= DECODE_WIDE_FROM_ROWS && act !== 'f32' && !fp8 && pipelined(variant, fp8);
}

/**
 * Splits of the context per (row, head) in a decode step: enough blocks to fill the GPU twice. It depends
 * only on the batch size (and the test option), never on the contexts, so a captured graph stays valid.
 */
export function decodeSplits(rows: number, heads: number, multiprocessors: number, fixedChunk: number | null): { splits: number; minChunk: number } {
  if (fixedChunk !== null) return { splits: DECODE_MAX_SPLITS, minChunk: fixedChunk };
  const forced = decodeSplitMode.get();
  const splits = forced !== 'auto' ? Number(forced) : Math.max(1, Math.min(DECODE_MAX_SPLITS, Math.ceil((2 * multiprocessors) / (rows * heads))));
  return { splits, minChunk: DECODE_MIN_CHUNK };
}

/**
 * The decode attention's split count: 'auto' (decodeSplits' rule) or a fixed count, from ZINFER_DECODE_SPLITS
 * or setDecodeSplits between steps (then resetGraphs): the A/B of a grid's size at batch 1, where most splits
 * of a short context return at once but every block must still be scheduled (PERF-NOTES, session 16).
 */
export const DECODE_SPLIT_MODES = ['auto', '1', '2', '4', '8', '16', '32'] as const;
export type DecodeSplitMode = (typeof DECODE_SPLIT_MODES)[number];
const decodeSplitMode = new EnvChoice(DECODE_SPLIT_MODES, 'auto', 'ZINFER_DECODE_SPLITS');
export const decodeSplitsMode = (): DecodeSplitMode => decodeSplitMode.get();
export const setDecodeSplits = (mode: DecodeSplitMode): void => decodeSplitMode.set(mode);

/**
 * The decode attention's thread-block clusters: 'auto' puts a (row, head)'s splits in clusters of up to the
 * GPU's cluster limit, whose first block merges them through shared memory (cuda/attention.cu), so a context
 * that fits one cluster's splits never goes through the global partials and counter; a number caps the
 * cluster lower; 'off' launches without clusters (every split publishes to global memory). Graphed batch-1
 * steps at 100 positions on an H200: 7B 3.82–3.90 → 3.71–3.76 ms, 13B tp-4 rank 2.26 → 2.22; equal at 1,000
 * positions and at 4 rows; caps of 4 and 2 no better than none (bench/results/shape-profile-cluster*-h200-s20.json).
 * ZINFER_DECODE_CLUSTER or setDecodeCluster (then resetGraphs): the bench's A/B.
 */
export const DECODE_CLUSTER_MODES = ['auto', 'off', '2', '4', '8'] as const;
export type DecodeClusterMode = (typeof DECODE_CLUSTER_MODES)[number];
const decodeClusterMode = new EnvChoice(DECODE_CLUSTER_MODES, 'auto', 'ZINFER_DECODE_CLUSTER');
export const decodeClustersMode = (): DecodeClusterMode => decodeClusterMode.get();
export const setDecodeCluster = (mode: DecodeClusterMode): void => decodeClusterMode.set(mode);

/**
 * The split count and cluster size of a decode launch from decodeSplits' count: one cluster of all the splits
 * when they fit the GPU's limit, else the count rounded to a multiple of the limit (at least one cluster,
 * at most DECODE_MAX_SPLITS, itself a multiple of 8) in clusters of the limit. Cluster 1: no cluster.
 */
export function decodeCluster(splits: number, maxCluster: number, mode: DecodeClusterMode = decodeClusterMode.get()): { splits: number; cluster: number } {
  if (mode === 'off' || maxCluster <= 1 || splits <= 1) return { splits, cluster: 1 };
  if (mode !== 'auto') maxCluster = Math.min(maxCluster, Number(mode));
  if (splits <= maxCluster) return { splits, cluster: splits };
  const clusters = Math.max(1, Math.min(Math.floor(DECODE_MAX_SPLITS / maxCluster), Math.round(splits / maxCluster)));
  return { splits: clusters * maxCluster, cluster: maxCluster };
}

export function launchAttention(ctx: StepContext, node: OpNode<'attention'>, kv: KvPointers, rope: RopeKv | null): void {
  const { heads, kvHeads, headDim, scale, slidingWindow, layer } = node.attrs;
  const { gpu, meta, act } = ctx;
  const rows = ctx.rowsOf(node.inputs.q);
  const [kCache, vCache] = [kv.k(layer), kv.v(layer)];
  const fp8 = kv.fp8 === true;
  const seqArgs = [ctx.metaPtr(meta.at.rowSeq), ctx.metaPtr(meta.at.seqInfo), ctx.metaPtr(meta.at.blockTables)];
  const window = slidingWindow ?? 0;
  const wide = decodeWide(rows, act, fp8);
  const lanes = decodeLanes(headDim, act, fp8, wide);
  if (meta.decodeOnly && lanes > 0) {
    const chosen = decodeSplits(rows, heads, gpu.multiprocessors, ctx.options.attentionChunk);
    const { splits, cluster } = decodeCluster(chosen.splits, gpu.maxClusterBlocks);
    const minChunk = chosen.minChunk;
    const partial = splits > 1 ? ctx.scratch(rows * heads * splits * (headDim + 2) * 4) : 0n; // [rows, heads, splits, headDim + 2]
    const counters = splits > 1 ? ctx.counters(rows * heads) : 0n;
    // q and k as the GEMV made them (before rotary when the rotary nodes are fused here).
    const [q, k] = rope ? [rope.q.inputs.x, rope.k.inputs.x] : [node.inputs.q, node.inputs.k];
    const r = rope?.q.attrs;
    const ropeArgs = r ? [ctx.invFreq(rope!.q), r.rotaryDim, r.interleaved ? 1 : 0, r.attentionScaling] : [0n, 0, 0, 1];
    const [pf, pfBytes] = prefetchOf(ctx, 'attention', ctx.plan.nextWeight.get(node), rows);
    gpu.launch(decodeAttentionKernel(lanes, act, undefined, fp8, wide), { x: splits, y: heads, z: rows }, DEC_THREADS, [
      ctx.value(node.output), partial, counters, ctx.value(q), kCache, vCache, ...seqArgs, headDim, kvHeads, kv.blockSize, window, scale, minChunk,
      ctx.value(k), ctx.value(node.inputs.v), ctx.metaPtr(meta.at.slots), ...ropeArgs, pf, pfBytes,
    ], 0, cluster);
    return;
  }
  writeKv(ctx, node, kv, rope);
  const q = ctx.value(node.inputs.q);
  const out = ctx.value(node.output);
  if (act !== 'f32' && !fp8 && ctx.options.flash && gpu.arch >= 80 && FLASH_HEAD_DIMS.includes(headDim)) {
    gpu.launch(`flash_prefill${headDim}_${act}`, { x: meta.tiles, y: heads }, FA_THREADS, [
      out, q, kCache, vCache, ctx.metaPtr(meta.at.tiles), ctx.metaPtr(meta.at.seqInfo), ctx.metaPtr(meta.at.blockTables), kvHeads, kv.blockSize, window, scale,
    ]);
    return;
  }
  const cache = fp8 ? '_e4m3' : '';
  const { chunk, chunks } = attentionChunks(meta.rowPositions, slidingWindow, ctx.options.attentionChunk);
  const partial = ctx.scratch(rows * heads * chunks * (headDim + 2) * 4); // [rows, heads, chunks, headDim + 2]
  gpu.launch(`attention_partial_${act}${cache}`, { x: chunks, y: heads, z: rows }, ATT_THREADS, [
    partial, q, kCache, vCache, ...seqArgs, headDim, kvHeads, kv.blockSize, window, scale, chunk,
  ]);
  gpu.launch(`attention_reduce_${act}`, { x: heads, y: rows }, threadsFor(headDim), [out, partial, headDim, chunks]);
}

/** The step's k and v into the cache, rotating q and k on the way when the rotary nodes are fused here. */
function writeKv(ctx: StepContext, node: OpNode<'attention'>, kv: KvPointers, rope: RopeKv | null): void {
  const { heads, kvHeads, headDim, layer } = node.attrs;
  const { gpu, meta, act } = ctx;
  const rows = ctx.rowsOf(node.inputs.q);
  const kvWidth = kvHeads * headDim;
  const [kCache, vCache] = [kv.k(layer), kv.v(layer)];
  const slots = ctx.metaPtr(meta.at.slots);
  const cache = kv.fp8 === true ? '_e4m3' : '';
  if (rope) {
    const a = rope.q.attrs;
    // Few rows: a block per head; many (a prompt): a block per row, its cos/sin table formed once.
    const perRow = rows >= ROPE_ROWS_PER_BLOCK_FROM;
    gpu.launch(`rope_kv_${act}${cache}`, { x: perRow ? 1 : heads, y: rows }, perRow ? threadsFor(headDim, 256) : threadsFor(headDim, 128), [
      ctx.value(rope.q.output), kCache, vCache, ctx.value(rope.q.inputs.x), ctx.value(rope.k.inputs.x), ctx.value(node.inputs.v),
      ctx.metaPtr(meta.at.positions), slots, ctx.invFreq(rope.q), heads, kvHeads, headDim, a.rotaryDim, a.interleaved ? 1 : 0, a.attentionScaling,
    ]);
  } else {
    // k, v [rows, kvWidth] → cache rows at the step's slots.
    gpu.launch(`kv_write_${act}${cache}`, { x: rows }, threadsFor(kvWidth), [kCache, vCache, ctx.value(node.inputs.k), ctx.value(node.inputs.v), slots, kvWidth]);
  }
}
