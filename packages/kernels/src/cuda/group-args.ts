// The arguments every fused linear-group kernel takes (cuda/gemv.cu, cuda/skinny.cu): up to 3 weight
// segments on one input, the norm before and the epilogue after.
import type { OpNode } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import type { LinearGroup } from './exec-plan.js';
import type { StepContext } from './step-context.js';

/** EPI_* and NORM_* of cuda/gemv.cu and cuda/skinny.cu. */
export const EPI = { none: 0, residual: 1, gated: 2, act: 3 } as const;
export const NORM = { none: 0, rms: 1, layer: 2 } as const;

/** What a group's fused kernel (GEMV or skinny GEMM) takes: its segments, input, norm and epilogue. */
export interface GroupArgs {
  /** Up to 3 (output, weight, bias, output features); unused ones zero. */
  segs: [bigint, bigint, bigint, number][];
  inF: number;
  x: bigint;
  res: bigint;
  normW: bigint;
  normB: bigint;
  eps: number;
  epi: number;
  act: number;
  norm: number;
  yF32: number;
}

export function groupArgs(ctx: StepContext, g: LinearGroup): GroupArgs {
  const ws = g.members.map((m) => ctx.weight(m.attrs.weight));
  const bias = (m: OpNode<'linear'>) => (m.attrs.bias === null ? 0n : ctx.weight(m.attrs.bias).ptr);
  const seg = (i: number): [bigint, bigint, bigint, number] => {
    if (i >= g.members.length || (g.epilogue.kind !== 'none' && g.epilogue.kind !== 'gated' && i > 0)) return [0n, 0n, 0n, 0];
    const y = g.epilogue.kind === 'none' ? ctx.value(g.outputs[i]) : i === 0 ? ctx.value(g.outputs[0]) : 0n;
    return [y, ws[i].ptr, bias(g.members[i]), ws[i].shape[0]];
  };
  const e = g.epilogue;
  return {
    segs: [seg(0), seg(1), seg(2)],
    inF: ws[0].shape[1],
    x: ctx.value(g.norm ? g.norm.inputs.x : g.input),
    res: e.kind === 'residual' ? ctx.value(e.residual) : 0n,
    normW: g.norm ? ctx.weight(g.norm.attrs.weight).ptr : 0n,
    normB: g.norm?.op === 'layerNorm' ? ctx.weight(g.norm.attrs.bias).ptr : 0n,
    eps: g.norm ? g.norm.attrs.eps : 0,
    epi: EPI[e.kind],
    act: e.kind === 'act' || e.kind === 'gated' ? ACTIVATION_CODES[e.node.attrs.fn] : 0,
    norm: g.norm === null ? NORM.none : g.norm.op === 'rmsNorm' ? NORM.rms : NORM.layer,
    yF32: g.outputs.some((v) => ctx.isF32(v)) ? 1 : 0,
  };
}

