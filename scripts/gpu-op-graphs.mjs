// Op graphs for the kernel checks (gpu-check.mjs, gpu-fp8-check.mjs): float inputs are embeddings of the
// step's token ids (token r → row r), and a compiled program runs a list of steps, disposed after.

/** `opGraph(tensors, kv, build)` and `runSteps(backend, graph, tensors, kvCache, steps)` over core/testing. */
export function opGraphHelpers(core, testing) {
  const { GraphBuilder } = core;
  const { memoryWeights, weightInfos } = testing;
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
  return { opGraph, runSteps };
}
