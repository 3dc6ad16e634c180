// The typed op set: every op a decoder step needs, with its inputs and attributes typed per op.
// Activations are 2-D row-major matrices [rows, width]: rows are the step's tokens (or the rows selected
// for logits); width is fixed per value. Backends implement these ops; `reference` defines them.

/** Index of a value (activation matrix or int vector) in a graph. */
export type ValueId = number;
/** Name of a weight in the model's weight set (see weights.ts). */
export type WeightName = string;

export type ActivationFn = 'relu' | 'silu' | 'gelu' | 'gelu_tanh';

/** Rotary position embedding parameters, fully resolved (scaling already folded into invFreq). */
export interface RotaryAttrs {
  heads: number;
  headDim: number;
  /** Leading dims of each head that rotate (GPT-NeoX partial rotary: fewer than headDim). */
  rotaryDim: number;
  /** rotaryDim / 2 inverse frequencies. */
  invFreq: readonly number[];
  /** Multiplies cos and sin (YaRN-style "attention factor"; 1 for most models). */
  attentionScaling: number;
  /** false: rotate halves (Llama / NeoX "rotate_half"); true: rotate adjacent pairs (GPT-J). */
  interleaved: boolean;
}

/**
 * The layout of an expert-parallel all-to-all: `ranks` ranks in `ranks / slices` expert groups of `slices`
 * consecutive ranks; each expert lives on one group (`owner[expert]`), tensor-sliced over its ranks.
 * coordinated: the paper's coordinated exchange; rank (group g, slice i) takes share g of the rows (the
 * same share as the other ranks of its group) and exchanges only with slice i of the other groups; an
 * all-gather then sums the slices and re-assembles the rows. Otherwise every rank takes its own share and
 * sends each row to every slice of each routed group.
 */
export interface MoeExchange {
  ranks: number;
  slices: number;
  owner: readonly number[];
  coordinated: boolean;
}

export interface OpSignatures {
  /**
   * out[r] = table[ids[r] + offset] * scale. ids: int value. With vocabShardStart set, the table holds only
   * rows [vocabShardStart, vocabShardStart + tableRows) of the vocabulary (a tensor-parallel shard): ids
   * outside it give zero rows, and an allReduce after the op completes the lookup.
   */
  embedding: { inputs: { ids: ValueId }; attrs: { table: WeightName; offset: number; scale: number; vocabShardStart?: number } };
  /** out = x · weightᵀ + bias; weight [outFeatures, inFeatures]. */
  linear: { inputs: { x: ValueId }; attrs: { weight: WeightName; bias: WeightName | null } };
  /** LayerNorm over each group of `dim` elements. */
  layerNorm: { inputs: { x: ValueId }; attrs: { weight: WeightName; bias: WeightName; eps: number; dim: number } };
  /** RMSNorm over each group of `dim` elements (dim < width: per-head q/k norm). */
  rmsNorm: { inputs: { x: ValueId }; attrs: { weight: WeightName; eps: number; dim: number } };
  add: { inputs: { a: ValueId; b: ValueId }; attrs: Record<string, never> };
  activation: { inputs: { x: ValueId }; attrs: { fn: ActivationFn } };
  /** fn(gate) * up (the gated MLP of Llama-family models). */
  gatedActivation: { inputs: { gate: ValueId; up: ValueId }; attrs: { fn: ActivationFn } };
  /** Rotates each head of x [rows, heads*headDim] by its token's position. positions: int value. */
  rotary: { inputs: { x: ValueId; positions: ValueId }; attrs: RotaryAttrs };
  /**
   * Writes k and v of the step's tokens into the paged KV cache of `layer` (slots from the step), then
   * causal attention of q over each sequence's context. q [rows, heads*headDim], k/v [rows, kvHeads*headDim].
   * slidingWindow W: a token attends to the W most recent positions, itself included.
   */
  attention: {
    inputs: { q: ValueId; k: ValueId; v: ValueId };
    attrs: { layer: number; heads: number; kvHeads: number; headDim: number; scale: number; slidingWindow: number | null };
  };
  /** Selects the step's logit rows (the last token of each sequence, or every prompt row when asked). */
  gatherRows: { inputs: { x: ValueId }; attrs: Record<string, never> };
  /**
   * Mixture-of-Experts routing: router logits x · weightᵀ ([rows, experts]), softmax, the topK most
   * probable experts (ties to the lower index), their probabilities renormalized to sum 1 when
   * `normalize`. Output [rows, 2 × topK]: topK expert ids (as floats), then their weights.
   */
  moeRouter: { inputs: { x: ValueId }; attrs: { weight: WeightName; experts: number; topK: number; normalize: boolean } };
  /**
   * The routed experts: out[r] = Σ_k weight_k · down_e(fn(gate_e · x[r]) ⊙ (up_e · x[r])) over the routed
   * experts e = id_k that this program holds (`experts` lists them with their global ids; under expert
   * parallelism each rank holds some, and an allReduce sums the ranks' parts).
   */
  moeExperts: {
    inputs: { x: ValueId; routing: ValueId };
    attrs: { topK: number; fn: ActivationFn; experts: readonly { id: number; gate: WeightName; up: WeightName; down: WeightName }[] };
  };
  /** out[r] = x[r] × sigmoid(gate[r]) for gate [rows, 1] (Qwen2-MoE's gated shared expert). */
  sigmoidGate: { inputs: { x: ValueId; gate: ValueId }; attrs: Record<string, never> };
  /** Sum of x over the ranks of the program's communicator (tensor parallelism); width unchanged. */
  allReduce: { inputs: { x: ValueId }; attrs: Record<string, never> };
  /** Concatenation along the width of every rank's x, in rank order: [rows, w] → [rows, w × ranks]. */
  allGather: { inputs: { x: ValueId }; attrs: { ranks: number } };
  /**
   * All-to-all dispatch of a Mixture-of-Experts layer (see moe-exchange.ts): each rank takes its share of
   * the rows and sends each row to the ranks holding its routed experts. Output [rows, width of the part]:
   * the rows this rank received (capacity = rows, so no row is ever dropped), laid out as the backend's
   * moeCombine reads them: host backends pack only the routed rows (rank 0's share first, each in row
   * order, then zero rows); CUDA sends whole capacity-sized shares (static counts), so every row arrives
   * in row order and the unrouted ones add nothing in moeExperts. part 'x' exchanges the activations;
   * part 'routing' gives the matching rows of the routing, which every rank already holds (copied locally).
   */
  moeDispatch: { inputs: { x: ValueId; routing: ValueId }; attrs: { exchange: MoeExchange; topK: number; part: 'x' | 'routing' } };
  /**
   * The matching combine: x holds moeExperts' (already routing-weighted) outputs for the rows moeDispatch
   * gave this rank; they return to the ranks they came from by a second all-to-all, each share's rows are
   * summed over the ranks that computed parts of them, and every rank gets every row: [rows, width].
   */
  moeCombine: { inputs: { x: ValueId; routing: ValueId }; attrs: { exchange: MoeExchange; topK: number } };
  /** Sends x to pipeline stage `peer` (through CompileOptions.pipeline); the output is x itself. */
  send: { inputs: { x: ValueId }; attrs: { peer: number } };
  /** Receives [rows, width] from pipeline stage `peer`; `ids` (the step's token ids) only gives the row count. */
  recv: { inputs: { ids: ValueId }; attrs: { peer: number; width: number } };
}

export type OpKind = keyof OpSignatures;

export type OpNode<K extends OpKind = OpKind> = {
  [P in K]: { op: P; inputs: OpSignatures[P]['inputs']; attrs: OpSignatures[P]['attrs']; output: ValueId };
}[K];

/** The compute ops every kernel backend implements. */
export const OP_KINDS: readonly OpKind[] = [
  'embedding', 'linear', 'layerNorm', 'rmsNorm', 'add', 'activation', 'gatedActivation', 'rotary', 'attention', 'gatherRows',
];

/** The Mixture-of-Experts ops (the MoE issue); backends list them in supports() when they implement them. */
export const MOE_KINDS: readonly OpKind[] = ['moeRouter', 'moeExperts', 'sigmoidGate'];

/**
 * The communication ops parallel plans insert: collectives run through CompileOptions.communicator,
 * send/recv between pipeline stages through CompileOptions.pipeline.
 */
export const COLLECTIVE_KINDS: readonly OpKind[] = ['allReduce', 'allGather', 'send', 'recv', 'moeDispatch', 'moeCombine'];
