// Which nodes the CUDA backend runs, and the compile-time checks of a graph's nodes against its KV layout.
import { BackendError, COLLECTIVE_KINDS, MOE_KINDS, OP_KINDS, type Graph, type OpNode } from '@zinfer/core';
import { ACTIVATION_FNS } from '../reference/activations.js';
import { moeSupported } from './moe-launch.js';

/** Largest head the attention kernel holds in registers (ATT_MAX_HEAD_DIM in cuda/attention.cu). */
export const MAX_HEAD_DIM = 256;
/** Rotary pairs a row's cos/sin table holds (ROPE_MAX_HALF in cuda/rotary.cu). */
export const MAX_ROTARY_PAIRS = 256;

export function supports(node: OpNode): boolean {
  if (COLLECTIVE_KINDS.includes(node.op)) return true; // through the communicators' device collectives (NCCL)
  if (!OP_KINDS.includes(node.op) && !MOE_KINDS.includes(node.op)) return false;
  if (node.op === 'activation' || node.op === 'gatedActivation') return ACTIVATION_FNS.includes(node.attrs.fn);
  if (node.op === 'attention') return node.attrs.headDim >= 1 && node.attrs.headDim <= MAX_HEAD_DIM && node.attrs.heads % node.attrs.kvHeads === 0;
  if (node.op === 'rotary') return node.attrs.rotaryDim <= 2 * MAX_ROTARY_PAIRS;
  if (node.op === 'moeExperts' && !ACTIVATION_FNS.includes(node.attrs.fn)) return false;
  return moeSupported(node);
}

/** Every node supported, every attention node inside the graph's KV layout; errors name the node. */
export function checkGraph(graph: Graph): void {
  const { kv } = graph;
  for (const [i, node] of graph.nodes.entries()) {
    if (!supports(node)) {
      const why = node.op === 'attention' ? ` (headDim ${node.attrs.headDim}: at most ${MAX_HEAD_DIM}; heads a multiple of kvHeads)`
        : node.op === 'rotary' ? ` (rotaryDim ${node.attrs.rotaryDim}: at most ${2 * MAX_ROTARY_PAIRS})` : '';
      throw new BackendError(`cuda backend does not support op ${node.op} (node ${i})${why}`, { found: JSON.stringify(node.attrs) });
    }
    if (node.op !== 'attention') continue;
    const a = node.attrs;
    const where = `attention node ${i} (layer ${a.layer})`;
    if (!(Number.isInteger(a.layer) && a.layer >= 0 && a.layer < kv.layers)) throw new BackendError(`${where} has no KV-cache layer`, { field: 'graph.kv.layers', expected: `> ${a.layer}`, found: String(kv.layers) });
    if (a.kvHeads !== kv.kvHeads || a.headDim !== kv.headDim) {
      throw new BackendError(`${where} disagrees with the graph's KV layout`, { field: 'graph.kv', expected: `kvHeads ${a.kvHeads}, headDim ${a.headDim}`, found: `kvHeads ${kv.kvHeads}, headDim ${kv.headDim}` });
    }
  }
  const out = graph.values[graph.output];
  if (!out || out.kind !== 'float') throw new BackendError(`graph output ${graph.output} is not a float value`);
}
