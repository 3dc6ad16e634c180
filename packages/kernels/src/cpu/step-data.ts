// The per-step data kernels read besides activations: token ids, positions, KV slots, each row's sequence,
// the sequences and their block tables, the selected rows, and cos/sin tables for rotary. Written at the
// start of the activation arena before the step's first kernel.
import type { Graph, RotaryAttrs, StepBatch, ValueId } from '@zinfer/core';
import type { CpuNode } from './fuse.js';
import { alignUp, type WasmHeap } from './heap.js';

export interface StepData {
  /** Byte offset of each int value (token ids, positions) as i32 [rows]. */
  ints: Map<ValueId, number>;
  slots: number;
  rowSeq: number;
  seqs: number;
  tables: number;
  /** cos and sin, f32 [rows, rotaryDim / 2], per rotary node (by node index). */
  rotary: Map<number, { cos: number; sin: number }>;
  /** The longest context of the step. */
  maxContext: number;
  bytes: number;
}

/** Rotary nodes with the same frequencies and scaling share one table (Llama's q and k). */
export function rotaryKeys(nodes: readonly CpuNode[]): Map<number, string> {
  const keys = new Map<number, string>();
  nodes.forEach((n, i) => {
    if (n.op === 'rotary') keys.set(i, `${n.inputs.positions}|${n.attrs.attentionScaling}|${n.attrs.invFreq.join(',')}`);
  });
  return keys;
}

export function writeStepData(heap: WasmHeap, at: number, graph: Graph, nodes: readonly CpuNode[], keys: ReadonlyMap<number, string>, batch: StepBatch): StepData {
  let top = at;
  const take = (bytes: number) => {
    const p = top;
    top = alignUp(top + bytes + 16);
    return p;
  };
  const rows = batch.tokenIds.length;
  const ints = new Map<ValueId, number>([
    [graph.inputs.tokenIds, take(rows * 4)],
    [graph.inputs.positions, take(rows * 4)],
  ]);
  const slots = take(rows * 4);
  const rowSeq = take(rows * 4);
  const seqs = take(batch.sequences.length * 16);
  const tableWords = batch.sequences.reduce((s, q) => s + q.blockTable.length, 0);
  const tables = take(tableWords * 4);
  // Rotary tables: sizes first, so the memory is grown once before anything is written.
  const rotaryAt = new Map<string, { cos: number; sin: number; attrs: RotaryAttrs; positions: ValueId }>();
  const rotary = new Map<number, { cos: number; sin: number }>();
  for (const [i, key] of keys) {
    const n = nodes[i];
    if (n.op !== 'rotary') continue;
    let t = rotaryAt.get(key);
    if (!t) {
      const half = n.attrs.rotaryDim >> 1;
      t = { cos: take(rows * half * 4), sin: take(rows * half * 4), attrs: n.attrs, positions: n.inputs.positions };
      rotaryAt.set(key, t);
    }
    rotary.set(i, { cos: t.cos, sin: t.sin });
  }
  heap.ensure(top, 'the step batch');
  const i32 = heap.i32;
  i32.set(batch.tokenIds, ints.get(graph.inputs.tokenIds)! >>> 2);
  i32.set(batch.positions, ints.get(graph.inputs.positions)! >>> 2);
  i32.set(batch.slots, slots >>> 2);
  let maxContext = 0;
  let tableAt = 0;
  batch.sequences.forEach((s, q) => {
    i32.fill(q, (rowSeq >>> 2) + s.queryStart, (rowSeq >>> 2) + s.queryStart + s.queryLength);
    i32.set([s.queryStart, s.queryLength, s.contextLength, tableAt], (seqs >>> 2) + 4 * q);
    i32.set(s.blockTable, (tables >>> 2) + tableAt);
    tableAt += s.blockTable.length;
    maxContext = Math.max(maxContext, s.contextLength);
  });
  const f32 = heap.f32;
  for (const t of rotaryAt.values()) {
    const { invFreq, attentionScaling, rotaryDim } = t.attrs;
    const half = rotaryDim >> 1;
    const positions = t.positions === graph.inputs.tokenIds ? batch.tokenIds : batch.positions;
    for (let r = 0; r < rows; r++) {
      const p = positions[r];
      const o = r * half;
      for (let i = 0; i < half; i++) {
        const angle = p * invFreq[i]; // in doubles, as the reference computes it
        f32[(t.cos >>> 2) + o + i] = Math.cos(angle) * attentionScaling;
        f32[(t.sin >>> 2) + o + i] = Math.sin(angle) * attentionScaling;
      }
    }
  }
  return { ints, slots, rowSeq, seqs, tables, rotary, maxContext, bytes: top - at };
}
