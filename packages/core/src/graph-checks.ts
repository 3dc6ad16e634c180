// The checks every backend's compile() makes before touching a device: each node supported, each
// attention node inside the graph's KV-cache layout, and a communicator for each communication op.
import type { CompileOptions, WeightSource } from './contracts.js';
import { BackendError } from './errors.js';
import type { Graph } from './graph.js';
import { COLLECTIVE_KINDS, type OpNode, type WeightName } from './ops.js';
import { numel, shapeString, type HostTensor } from './tensor.js';

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

/** One graph weight from the source, checked against the graph: shape, storage for its dtype, length. */
export function fetchGraphWeight(graph: Graph, source: WeightSource, name: WeightName): HostTensor {
  const info = graph.weights.get(name);
  if (!info) throw new BackendError(`the graph declares no weight ${name}`, { tensor: name });
  const t = source.get(name);
  if (!t) throw new BackendError(`weight source returned nothing for weight ${name}`, { tensor: name });
  const same = t.shape.length === info.shape.length && t.shape.every((d, i) => d === info.shape[i]);
  if (!same) throw new BackendError(`weight ${name} has the wrong shape`, { tensor: name, expected: shapeString(info.shape), found: shapeString(t.shape) });
  const storage = t.dtype === 'f32' ? t.data instanceof Float32Array : (t.dtype === 'f16' || t.dtype === 'bf16') && t.data instanceof Uint16Array;
  if (!storage) throw new BackendError(`weight ${name} has dtype ${t.dtype} with ${t.data.constructor.name} storage`, { tensor: name, expected: 'f32 in Float32Array, f16/bf16 in Uint16Array' });
  if (t.data.length !== numel(info.shape)) throw new BackendError(`weight ${name} has ${t.data.length} elements for shape ${shapeString(info.shape)}`, { tensor: name });
  return t;
}
