import { checkGraphForBackend, fetchGraphWeight, type CompileOptions, type Graph, type HostTensor, type WeightName, type WeightSource } from '@zinfer/core';
import { KvCache } from './kv-cache.js';
import { ReferenceProgram } from './program.js';
import { supports } from './supports.js';

/** Loads and checks every resident weight, checks every node, allocates the KV cache. */
export async function compileReference(graph: Graph, source: WeightSource, options: CompileOptions): Promise<ReferenceProgram> {
  checkGraphForBackend(graph, { name: 'reference', supports }, options);
  const streamed = new Set<WeightName>(options.stream?.groups.flat() ?? []);
  const weights = loadWeights(graph, source, streamed);
  return new ReferenceProgram(graph, weights, new KvCache(graph.kv, options.kvCache), options.communicator ?? null, options.pipeline ?? null, options.stream ?? null);
}

/** Every graph weight outside the stream, kept in its stored dtype (checked: a mismatch names the weight). */
function loadWeights(graph: Graph, source: WeightSource, streamed: ReadonlySet<WeightName>): Map<WeightName, HostTensor> {
  const names = [...graph.weights.keys()].filter((name) => !streamed.has(name));
  return new Map(names.map((name) => [name, fetchGraphWeight(graph, source, name)]));
}
