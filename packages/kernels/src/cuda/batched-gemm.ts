// Linear groups whose weights lie side by side at one stride (device-weights.ts: q, k and v without GQA;
// gate and up) run over 9–64 rows as one strided-batched cuBLAS GEMM on their shared input instead of one
// GEMM each: the launch has the members' tiles together, where one 4096-row weight at 16–64 rows leaves most
// SMs idle. On an H200 the 7B q, k and v took 28.6–30.1 µs as a batch against 38–64 µs as 3 GEMMs
// (bench/results/gemm-merge-h200-s9.json). Their outputs then lie [member][rows][width] in a buffer of the
// group's own (the step launcher's), so every reader finds each as an ordinary [rows, width] value.
import { BackendError, type OpNode, type ValueId } from '@zinfer/core';
import type { DeviceWeight } from './device-weights.js';
import { EnvChoice } from './env-choice.js';
import type { LinearGroup } from './exec-plan.js';
import type { GemmArgs } from './gpu.js';
import type { StepContext } from './step-context.js';

/** ZINFER_BATCHED_GEMM=off runs each member as its own GEMM again (the bench's A/B; then resetGraphs). */
export const BATCHED_GEMM_MODES = ['on', 'off'] as const;
export type BatchedGemmMode = (typeof BATCHED_GEMM_MODES)[number];
const mode = new EnvChoice(BATCHED_GEMM_MODES, 'on', 'ZINFER_BATCHED_GEMM');
export const batchedGemmMode = (): BatchedGemmMode => mode.get();
export const setBatchedGemmMode = (m: BatchedGemmMode): void => mode.set(m);

/** Rows from which linear groups run as GEMVs below, and up to which they batch. */
export const BATCHED_MIN_ROWS = 9;
export const BATCHED_MAX_ROWS = 64;

/** A group that can run as one strided batch: its member linears, output width, input width and weight stride. */
export interface BatchedGroup {
  members: OpNode<'linear'>[];
  /** The members' outputs, in member order: where the batch writes. */
  outputs: ValueId[];
  width: number;
  inF: number;
  /** Elements from one member's weight to the next. */
  strideW: number;
  /** Why cuBLASLt refused the batch, once it has (the members then run one GEMM each). */
  refused?: string;
}

/**
 * The members of a group that can run as one strided batch, or null: ≥ 2 of one shape (all of them, or k
 * and v beside a wider q under GQA), weights in the activation dtype at one positive stride (uploaded side
 * by side). The others run on their own.
 */
export function batchedGroup(g: LinearGroup, weight: (name: string) => DeviceWeight | null, act: string): BatchedGroup | null {
  const ws = g.members.map((m) => weight(m.attrs.weight));
  if (ws.some((w) => !w || w.dtype !== act || w.shape.length !== 2)) return null;
  const byShape = new Map<string, number[]>();
  ws.forEach((w, i) => {
    const key = w!.shape.join('x');
    byShape.set(key, [...(byShape.get(key) ?? []), i]);
  });
  const pick = [...byShape.values()].find((list) => list.length > 1);
  if (!pick) return null;
  const members = pick.map((i) => g.members[i]);
  const mine = pick.map((i) => ws[i]!);
  const [n, inF] = mine[0].shape;
  const bytes = mine[0].bytes / (n * inF);
  const step = mine[1].ptr - mine[0].ptr;
  if (step <= 0n || step % BigInt(bytes) !== 0n || mine.some((w, i) => w.ptr - mine[0].ptr !== step * BigInt(i))) return null;
  return { members, outputs: members.map((m) => m.output), width: n, inF, strideW: Number(step) / bytes };
}

/**
 * The batch, then each member's bias (bias_add, as a lone linear has it). Should cuBLASLt refuse the batch
 * (no algorithm, or a status error: nothing was enqueued then), the group's members run one GEMM each into
 * the same places from then on.
 */
export function launchBatched(ctx: StepContext, b: BatchedGroup, rows: number): void {
  const x = ctx.value(b.members[0].inputs.x);
  const one = (i: number): GemmArgs => ({ y: ctx.value(b.outputs[i]), x, w: ctx.weight(b.members[i].attrs.weight).ptr, dtype: ctx.act, yDtype: ctx.act, rows, inF: b.inF, outF: b.width });
  if (!b.refused) {
    try {
      ctx.gpu.gemm!({ ...one(0), batch: { count: b.members.length, strideW: b.strideW, strideY: rows * b.width } });
    } catch (e) {
      if (!(e instanceof BackendError) || !e.message.includes('cuBLASLt')) throw e;
      b.refused = e.message;
    }
  }
  if (b.refused) for (let i = 0; i < b.members.length; i++) ctx.gpu.gemm!(one(i));
  for (const [i, m] of b.members.entries()) {
    if (m.attrs.bias === null) continue;
    ctx.gpu.launch(`bias_add_${ctx.act}`, { x: Math.min(4096, Math.ceil((rows * b.width) / 256)) }, 256, [ctx.value(b.outputs[i]), ctx.weight(m.attrs.bias).ptr, rows * b.width, b.width, 0]);
  }
}
