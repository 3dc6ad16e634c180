// The checks every backend's compile() makes before touching a device: each node supported, each
// attention node inside the graph's KV-cache layout, and a communicator for each communication op.
import type { CompileOptions } from './contracts.js';
import { BackendError } from './errors.js';
import type { Graph } from './graph.js';
import { COLLECTIVE_KINDS, type OpNode } from './ops.js';

export function checkGraphForBackend(
  graph: Graph,
  backend: { name: string; supports(node: OpNode): boolean },
  options: Pick<CompileOptions, 'communicator' | 'pipeline'>,
  /** Extra words on why a node is unsupported (limits of this backend), shown in the error. */
  why: (node: OpNode) => string = () => '',
): void {
  const { kv } = graph;
  for (const [i, node] of graph.nodes.entries()) {
    if (!backend.supports(node)) throw new BackendError(`${backend.name} backend does not support op ${node.op} (node ${i})${why(node)}`, { found: JSON.stringify(node.attrs) });
    if (COLLECTIVE_KINDS.includes(node.op)) {
      const field = node.op === 'send' || node.op === 'recv' ? 'pipeline' : 'communicator';
      if (!options[field]) throw new BackendError(`the graph has a ${node.op} node but no ${field} was given`, { field, expected: 'a Communicator from a parallel plan', found: 'none' });
    }
    if (node.op !== 'attention') continue;
    const a = node.attrs;
    const where = `attention node ${i} (layer ${a.layer})`;
    if (!(Number.isInteger(a.layer) && a.layer >= 0 && a.layer < kv.layers)) throw new BackendError(`${where} has no KV-cache layer`, { field: 'graph.kv.layers', expected: `> ${a.layer}`, found: String(kv.layers) });
    if (a.kvHeads !== kv.kvHeads || a.headDim !== kv.headDim) {
      throw new BackendError(`${where} disagrees with the graph's KV layout`, { field: 'graph.kv', expected: `kvHeads ${a.kvHeads}, headDim ${a.headDim}`, found: `kvHeads ${kv.kvHeads}, headDim ${kv.headDim}` });
    }
    if (a.heads % a.kvHeads !== 0) throw new BackendError(`${where}: heads ${a.heads} is not a multiple of kvHeads ${a.kvHeads}`);
  }
}
