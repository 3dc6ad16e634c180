import type { GraphBuilder, KvLayout } from '../graph.js';
import type { ConfigReader } from '../model-config.js';
import type { ValueId, WeightName } from '../ops.js';
import type { HostTensor } from '../tensor.js';

/** The numbers the engine needs about a model, whatever its architecture. */
export interface ModelSpec {
  /** config.json model_type. */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  /** Longest context (prompt + generated tokens) the model's positions allow. */
  maxPositions: number;
  kv: KvLayout;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

/** How one graph weight is made from a tensor in the checkpoint. */
export interface WeightRecipe {
  /** Name the graph uses. */
  name: WeightName;
  /** Shape the graph expects (after transform). */
  shape: number[];
  /** Tensor name in the checkpoint, as transformers saves it. */
  source: string;
  /** Shape the checkpoint tensor must have, when it differs from `shape` (fused or transposed weights). */
  sourceShape?: number[];
  /** Turns the checkpoint tensor into the graph weight (transpose, take rows of a fused matrix). */
  transform?: (t: HostTensor) => HostTensor;
}

export interface ModelDescription {
  spec: ModelSpec;
  weights: WeightRecipe[];
  /** Adds the decoder step to `b`; returns the logits value ([selected rows, vocab]). */
  build(b: GraphBuilder): ValueId;
}

export interface Architecture {
  /** config.json model_type values this architecture reads. */
  readonly modelTypes: readonly string[];
  describe(cfg: ConfigReader): ModelDescription;
}

/** The ModelSpec fields every architecture reads the same way (token ids), plus its own numbers. */
export function modelSpec(cfg: ConfigReader, s: Omit<ModelSpec, 'bosTokenId' | 'eosTokenIds'>): ModelSpec {
  return { ...s, bosTokenId: cfg.has('bos_token_id') ? cfg.int('bos_token_id') : null, eosTokenIds: cfg.intList('eos_token_id') };
}
