import { checkGraphForBackend, fetchGraphWeight, type CompileOptions, type Graph, type HostTensor, type WeightName, type WeightSource } from '@zinfer/core';
import { KvCache } from './kv-cache.js';
import { ReferenceProgram } from './program.js';
import { supports } from './supports.js';

/** Loads and checks every weight, checks every node, allocates the KV cache. */
export async function compileReference(graph: Graph, source: WeightSource, options: CompileOptions): Promise<ReferenceProgram> {
  checkGraphForBackend(graph, { name: 'reference', supports }, options);
  const weights = loadWeights(graph, source);
  return new ReferenceProgram(graph, weights, new KvCache(graph.kv, options.kvCache), options.communicator ?? null, options.pipeline ?? null);
}

/** Every weight the graph declares, kept in its stored dtype (checked: a mismatch names the weight). */
function loadWeights(graph: Graph, source: WeightSource): Map<WeightName, HostTensor> {
  return new Map([...graph.weights.keys()].map((name) => [name, fetchGraphWeight(graph, source, name)]));
}
