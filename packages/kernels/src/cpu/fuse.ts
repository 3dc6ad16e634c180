// The cpu backend's graph rewrite: linears absorb what follows them when the intermediate value has no
// other reader, so the intermediate is never written to memory and read back:
//   linear → activation              one pass: bias + activation in the GEMM epilogue
//   linear (→ activation) → add      one pass: + residual in the epilogue
//   linear, linear → gatedActivation gate and up in one kernel, fn(gate)·up in its epilogue
// and linears that read the same input with the same weight dtype (q/k/v) run as one kernel, so the
// threads split their outputs together and the input is packed once.
import type { ActivationFn, FloatDType, Graph, OpNode, ValueId, WeightName } from '@zinfer/core';

export interface LinearPart {
  weight: WeightName;
  bias: WeightName | null;
  /** Applied to (x·Wᵀ + bias) before the residual. */
  act: ActivationFn | null;
  residual: ValueId | null;
  /** The value this part defines (for a gated pair: unused, the group's `gatedOut` is the value). */
  out: ValueId;
}

export interface LinearGroup {
  op: 'linearGroup';
  x: ValueId;
  parts: LinearPart[];
  /** fn of fn(gate)·up when parts are [gate, up]; null for independent parts. */
  gated: ActivationFn | null;
  gatedOut: ValueId;
}

export type CpuNode = Exclude<OpNode, { op: 'linear' }> | LinearGroup;

/** Values a node reads. */
export function nodeInputs(n: CpuNode): ValueId[] {
  if (n.op === 'linearGroup') return [n.x, ...n.parts.flatMap((p) => (p.residual === null ? [] : [p.residual]))];
  return Object.values(n.inputs) as ValueId[];
}

/** Values a node defines. */
export function nodeOutputs(n: CpuNode): ValueId[] {
  if (n.op === 'linearGroup') return n.gated ? [n.gatedOut] : n.parts.map((p) => p.out);
  return [n.output];
}

/** Most linears one kernel runs together (its argument block has room for this many). */
export const MAX_PARTS = 16;

interface Placed {
  part: LinearPart;
  x: ValueId;
  /** Index of the original node whose place the fused kernel takes. */
  at: number;
}

/** Rewrites the graph's nodes; `dtypeOf` gives each weight's stored dtype (fusing needs one dtype per kernel). */
export function fuseGraph(graph: Graph, dtypeOf: (w: WeightName) => FloatDType, opts: { fuse?: boolean } = {}): CpuNode[] {
  const nodes = graph.nodes;
  const slots: (CpuNode | null)[] = nodes.map((n) => (n.op === 'linear' ? null : n));
  const linears = new Map<ValueId, Placed>(); // by the value the (possibly fused) linear defines
  nodes.forEach((n, i) => {
    if (n.op === 'linear') linears.set(n.output, { part: { weight: n.attrs.weight, bias: n.attrs.bias, act: null, residual: null, out: n.output }, x: n.inputs.x, at: i });
  });
  if (opts.fuse === false) return place(slots, [...linears.values()].map((p) => group([p], null, p.part.out)));

  const readers = new Map<ValueId, number>();
  for (const n of nodes) for (const v of Object.values(n.inputs) as ValueId[]) readers.set(v, (readers.get(v) ?? 0) + 1);
  readers.set(graph.output, (readers.get(graph.output) ?? 0) + 1);
  const sole = (v: ValueId): Placed | null => (readers.get(v) === 1 ? linears.get(v) ?? null : null);
  const absorb = (p: Placed, from: ValueId, into: ValueId, at: number) => {
    linears.delete(from);
    p.part.out = into;
    p.at = at;
    linears.set(into, p);
    slots[at] = null;
  };

  const gatedGroups: Grouped[] = [];
  nodes.forEach((n, i) => {
    if (n.op === 'activation') {
      const p = sole(n.inputs.x);
      if (p && p.part.act === null && p.part.residual === null) {
        p.part.act = n.attrs.fn;
        absorb(p, n.inputs.x, n.output, i);
      }
    } else if (n.op === 'add') {
      const { a, b } = n.inputs;
      for (const [mine, other] of [[b, a], [a, b]] as const) {
        const p = sole(mine);
        if (p && p.part.residual === null && mine !== other) {
          p.part.residual = other;
          absorb(p, mine, n.output, i);
          break;
        }
      }
    } else if (n.op === 'gatedActivation') {
      const [g, u] = [sole(n.inputs.gate), sole(n.inputs.up)];
      const plain = (p: Placed | null): p is Placed => p !== null && p.part.act === null && p.part.residual === null;
      if (plain(g) && plain(u) && g !== u && g.x === u.x && dtypeOf(g.part.weight) === dtypeOf(u.part.weight)) {
        linears.delete(n.inputs.gate);
        linears.delete(n.inputs.up);
        slots[i] = null;
        gatedGroups.push({ ...group([g, u], n.attrs.fn, n.output), at: i });
      }
    }
  });
  // Where each value is defined now, for the grouping below (graph inputs: −1).
  const definedAt = new Map<ValueId, number>();
  slots.forEach((n, i) => {
    if (n && n.op !== 'linearGroup') definedAt.set(n.output, i);
  });
  for (const p of linears.values()) definedAt.set(p.part.out, p.at);
  for (const g of gatedGroups) definedAt.set(g.gatedOut, g.at);
  return place(slots, [...groupByInput([...linears.values()], dtypeOf, definedAt), ...gatedGroups]);
}

type Grouped = LinearGroup & { at: number };

function group(members: Placed[], gated: ActivationFn | null, gatedOut: ValueId): Grouped {
  return { op: 'linearGroup', x: members[0].x, parts: members.map((m) => m.part), gated, gatedOut, at: Math.min(...members.map((m) => m.at)) };
}

/**
 * Groups linears that read the same x with the same weight dtype, at the place of the first of them;
 * a later one joins only if its residual is already defined there.
 */
function groupByInput(placed: Placed[], dtypeOf: (w: WeightName) => FloatDType, definedAt: ReadonlyMap<ValueId, number>): Grouped[] {
  const open = new Map<string, Placed[]>();
  const groups: Placed[][] = [];
  for (const p of [...placed].sort((a, b) => a.at - b.at)) {
    const key = `${p.x}/${dtypeOf(p.part.weight)}`;
    const g = open.get(key);
    const ready = (r: ValueId | null, at: number) => r === null || (definedAt.get(r) ?? -1) < at;
    if (g && g.length < MAX_PARTS && ready(p.part.residual, g[0].at)) {
      g.push(p);
      continue;
    }
    const fresh = [p];
    open.set(key, fresh);
    groups.push(fresh);
  }
  return groups.map((g) => group(g, null, g[0].part.out));
}

function place(slots: readonly (CpuNode | null)[], groups: readonly Grouped[]): CpuNode[] {
  const out = [...slots];
  for (const { at, ...g } of groups) {
    if (out[at] !== null) throw new Error(`cpu graph rewrite placed two nodes at ${at}`);
    out[at] = g;
  }
  return out.filter((n): n is CpuNode => n !== null);
}
