import { BackendError, checkGraphForBackend, shapeString, type CompileOptions, type Graph, type HostTensor, type WeightName, type WeightSource } from '@zinfer/core';
import { KvCache } from './kv-cache.js';
import { ReferenceProgram } from './program.js';
import { supports } from './supports.js';

/** Loads and checks every weight, checks every node, allocates the KV cache. */
export async function compileReference(graph: Graph, source: WeightSource, options: CompileOptions): Promise<ReferenceProgram> {
  checkGraphForBackend(graph, { name: 'reference', supports }, options);
  const weights = loadWeights(graph, source);
  return new ReferenceProgram(graph, weights, new KvCache(graph.kv, options.kvCache), options.communicator ?? null, options.pipeline ?? null);
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
