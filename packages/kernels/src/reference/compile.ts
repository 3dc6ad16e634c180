import { BackendError, COLLECTIVE_KINDS, shapeString, type CompileOptions, type Graph, type HostTensor, type WeightName, type WeightSource } from '@zinfer/core';
import { KvCache } from './kv-cache.js';
import { ReferenceProgram } from './program.js';
import { supports } from './supports.js';

/** Loads and checks every weight, checks every node, allocates the KV cache. */
export async function compileReference(graph: Graph, source: WeightSource, options: CompileOptions): Promise<ReferenceProgram> {
  checkNodes(graph);
  for (const n of graph.nodes.filter((n) => COLLECTIVE_KINDS.includes(n.op))) {
    const field = n.op === 'send' || n.op === 'recv' ? 'pipeline' : 'communicator';
    if (!options[field]) throw new BackendError(`the graph has a ${n.op} node but no ${field} was given`, { field, expected: 'a Communicator from a parallel plan', found: 'none' });
  }
  const weights = loadWeights(graph, source);
  return new ReferenceProgram(graph, weights, new KvCache(graph.kv, options.kvCache), options.communicator ?? null, options.pipeline ?? null);
}

function checkNodes(graph: Graph): void {
  const { kv } = graph;
  for (const [i, node] of graph.nodes.entries()) {
    if (!supports(node)) throw new BackendError(`reference backend does not support op ${node.op} (node ${i})`, { found: JSON.stringify(node.attrs) });
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

/** Every weight the graph declares, kept in its stored dtype; a shape mismatch names the weight. */
function loadWeights(graph: Graph, source: WeightSource): Map<WeightName, HostTensor> {
  const out = new Map<WeightName, HostTensor>();
  for (const [name, info] of graph.weights) {
    const t = source.get(name);
    if (!t) throw new BackendError(`weight source returned nothing for weight ${name}`, { tensor: name });
    const same = t.shape.length === info.shape.length && t.shape.every((d, i) => d === info.shape[i]);
    if (!same) throw new BackendError(`weight ${name} has the wrong shape`, { tensor: name, expected: shapeString(info.shape), found: shapeString(t.shape) });
    const storage = t.dtype === 'f32' ? t.data instanceof Float32Array : (t.dtype === 'f16' || t.dtype === 'bf16') && t.data instanceof Uint16Array;
    if (!storage) throw new BackendError(`weight ${name} has dtype ${t.dtype} with ${t.data.constructor.name} storage`, { tensor: name, expected: 'f32 in Float32Array, f16/bf16 in Uint16Array' });
    if (t.data.length !== info.shape.reduce((a, b) => a * b, 1)) throw new BackendError(`weight ${name} has ${t.data.length} elements for shape ${shapeString(info.shape)}`, { tensor: name });
    out.set(name, t);
  }
  return out;
}
