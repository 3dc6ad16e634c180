// Opens a Hugging Face model directory: config.json → architecture → graph, weights (lazy), tokenizer.
// A directory with zinfer-synthetic.json instead of safetensors gets generated weights (synthetic-weights.ts).
import { describeModel, type ModelDescription, type ModelSpec } from './architectures/index.js';
import type { FloatDType } from './dtype.js';
import { GraphBuilder, type Graph, type WeightInfo } from './graph.js';
import { ConfigReader } from './model-config.js';
import { ModelWeights } from './model-weights.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';
import { openSyntheticWeights } from './synthetic-weights.js';
import { openWeightFiles } from './weight-files.js';

export interface LoadedModel {
  dir: string;
  spec: ModelSpec;
  graph: Graph;
  weights: ModelWeights;
  tokenizer: TextTokenizer | null;
}

export interface LoadModelOptions {
  dtype?: FloatDType;
  onProgress?: (done: number, total: number, name: string) => void;
}

export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const cfg = ConfigReader.load(dir);
  const desc = describeModel(cfg);
  const graph = buildGraph(desc);
  const files = openSyntheticWeights(dir, desc.weights) ?? openWeightFiles(dir);
  try {
    const weights = new ModelWeights(files, desc.weights, { dtype: opts.dtype, onProgress: opts.onProgress, dir });
    const tokenizer = await loadTokenizer(dir);
    return { dir, spec: desc.spec, graph, weights, tokenizer };
  } catch (e) {
    files.close();
    throw e;
  }
}

export function buildGraph(desc: ModelDescription): Graph {
  const weights = new Map<string, WeightInfo>(desc.weights.map((w) => [w.name, { name: w.name, shape: w.shape }]));
  const b = new GraphBuilder(weights, desc.spec.kv);
  return b.build(desc.build(b));
}
