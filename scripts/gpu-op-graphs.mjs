// Op graphs for the kernel checks (gpu-check.mjs, gpu-fp8-check.mjs): float inputs are embeddings of the
// step's token ids (token r → row r), and a compiled program runs a list of steps, disposed after.

/**
 * `opGraph(tensors, kv, build)`, `runSteps(backend, graph, tensors, kvCache, steps)` and
 * `longContextAttention(shape)` over core/testing.
 */
export function opGraphHelpers(core, testing) {
  const { GraphBuilder, Rng } = core;
  const { memoryWeights, randomTensor, range, stepBatch, weightInfos } = testing;
  function opGraph(tensors, kv, build) {
    const b = new GraphBuilder(weightInfos(tensors), kv);
    return b.build(build(b, (t) => b.embedding(b.inputs.tokenIds, t)));
  }
  async function runSteps(be, graph, tensors, kvCache, steps) {
    const p = await be.compile(graph, memoryWeights(tensors), { kvCache });
    try {
      const out = [];
      for (const s of steps) out.push(await p.run(s));
      return out;
    } finally {
      await p.dispose();
    }
  }
  /** One attention layer whose q, k and v are embeddings of tokens of a 97-word vocabulary; tok(n): n random tokens. */
  function attentionLayer({ heads, kvHeads, headDim, window, seed }) {
    const rng = Rng.fromSeed(seed);
    const vocab = 97;
    const tensors = new Map([['q', randomTensor(rng, 'f32', [vocab, heads * headDim])], ['k', randomTensor(rng, 'f32', [vocab, kvHeads * headDim])], ['v', randomTensor(rng, 'f32', [vocab, kvHeads * headDim])]]);
    const kv = { layers: 1, kvHeads, headDim };
    const attrs = { layer: 0, heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: window };
    const graph = opGraph(tensors, kv, (b, x) => b.attention(x('q'), x('k'), x('v'), attrs));
    const tok = (n) => range(n).map(() => Math.floor(rng.next() * vocab));
    return { rng, tensors, graph, tok };
  }
  /**
   * One attention layer over a long context: two sequences (1504 and 704 tokens, blocks of 16 shuffled
   * between them) as prompt chunks of 512 / 512 + 700 / 476 rows, then 4 decode steps of both.
   */
  function longContextAttention({ heads, kvHeads, headDim, window }) {
    const { rng, tensors, graph, tok } = attentionLayer({ heads, kvHeads, headDim, window, seed: 11 + headDim });
    const [ta, tb] = [tok(1504), tok(704)];
    const blocks = range(Math.ceil(1504 / 16) + Math.ceil(704 / 16)).sort(() => rng.next() - 0.5);
    const [ba, bb] = [blocks.slice(0, 94), blocks.slice(94)];
    const steps = [
      stepBatch([{ tokens: ta.slice(0, 512), cached: 0, blocks: ba }], 16, 'all'),
      stepBatch([{ tokens: ta.slice(512, 1024), cached: 512, blocks: ba }, { tokens: tb.slice(0, 700), cached: 0, blocks: bb }], 16, 'all'),
      stepBatch([{ tokens: ta.slice(1024, 1500), cached: 1024, blocks: ba }], 16, 'all'),
    ];
    for (let i = 0; i < 4; i++) steps.push(stepBatch([{ tokens: [tb[700 + i]], cached: 700 + i, blocks: bb }, { tokens: [ta[1500 + i]], cached: 1500 + i, blocks: ba }], 16, 'all'));
    return { graph, tensors, kvCache: { numBlocks: blocks.length, blockSize: 16 }, steps };
  }
  /**
   * One attention layer over many sequences of mixed lengths (1, 15, 16, 17, 100, 600, then random up
   * to 400; blocks of 16 shuffled between them): prompts in steps of up to 2,048 rows, then `decodeSteps`
   * decode steps of every sequence at once (batch steps: the wide decode attention of an f16 cache).
   */
  function manySequenceAttention({ heads, kvHeads, headDim, sequences, decodeSteps = 3 }) {
    const { rng, tensors, graph, tok } = attentionLayer({ heads, kvHeads, headDim, window: null, seed: 23 + headDim + sequences });
    const fixed = [1, 15, 16, 17, 100, 600];
    const lengths = range(sequences).map((i) => (i < fixed.length ? fixed[i] : 1 + Math.floor(rng.next() * 400)));
    const need = lengths.map((n) => Math.ceil((n + decodeSteps) / 16));
    const pool = range(need.reduce((a, b) => a + b, 0)).sort(() => rng.next() - 0.5);
    let at = 0;
    const seqs = lengths.map((n, i) => ({ tokens: tok(n + decodeSteps), n, blocks: pool.slice(at, (at += need[i])) }));
    const steps = [];
    let batch = [];
    let rows = 0;
    for (const q of seqs) {
      if (rows + q.n > 2048 && batch.length) {
        steps.push(stepBatch(batch, 16, 'all'));
        [batch, rows] = [[], 0];
      }
      batch.push({ tokens: q.tokens.slice(0, q.n), cached: 0, blocks: q.blocks });
      rows += q.n;
    }
    steps.push(stepBatch(batch, 16, 'all'));
    const prompts = steps.length;
    for (let i = 0; i < decodeSteps; i++) steps.push(stepBatch(seqs.map((q) => ({ tokens: [q.tokens[q.n + i]], cached: q.n + i, blocks: q.blocks })), 16, 'all'));
    return { graph, tensors, kvCache: { numBlocks: pool.length, blockSize: 16 }, steps, prompts };
  }
  return { opGraph, runSteps, longContextAttention, manySequenceAttention };
}
