// The sampling part of the GPU check (scripts/gpu-check.mjs calls checkSample; run it alone with
// ZINFER_GPU_CHECK_ONLY=sample). cuda/sample.cu splits a row over a thread-block cluster whose size the host
// picks per launch (ZINFER_SAMPLE_CLUSTER, src/cuda/sample-launch.ts), so the kernel's picks are checked
// against core's HostRowSampler (TokenFilter.pick) under every cluster size, with and without PDL:
//   - the conformance's runSample cases (widths 7, 3,001 and 50,257; ties, NaN, ±Infinity, penalties);
//   - a sweep of widths that leave the last block a short or empty slice (5, 2,049, 32,001, 151,936) and of
//     row counts below, at and above the SMs (1, 7, 64, 150), random logits with and without ties, the
//     settings of the engine's requests (plain, top-k, top-p, all of them with a penalty).
// Every pick must equal the host's; a mismatch names the width, rows, cluster and row.
export async function checkSample(env) {
  const { log, runCase, save, makeBackend, opts, oracle, core, testing, cuda } = env;
  const { HostRowSampler, Rng } = core;
  const { kernelBackendConformance, stepBatch, memoryWeights, tensorOf } = testing;
  const { opGraphHelpers } = await import('./gpu-op-graphs.mjs');
  const { opGraph } = opGraphHelpers(core, testing);
  const modes = ['1', '2', '4', '8', 'auto'];
  const withMode = async (mode, fn) => {
    cuda.setSampleClusterMode(mode);
    try {
      return await fn();
    } finally {
      cuda.setSampleClusterMode('auto');
    }
  };

  for (const pdl of [false, true]) {
    const be = makeBackend({ ...opts, pdl });
    for (const mode of modes)
      for (const c of kernelBackendConformance(be, { oracle })) if (/runSample/.test(c.name)) await runCase(`sample cluster=${mode} pdl=${pdl}`, c.name, () => withMode(mode, c.run));
    save();
  }

  const SETTINGS = [
    { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 },
    { temperature: 0.8, topK: 50, topP: 1, minP: 0, repetitionPenalty: 1 },
    { temperature: 0.8, topK: 0, topP: 0.95, minP: 0, repetitionPenalty: 1 },
    { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.2 },
    { temperature: 3, topK: 0, topP: 0.5, minP: 0, repetitionPenalty: 1.1 },
  ];
  const backend = makeBackend({ ...opts, pdl: true });
  const host = new HostRowSampler();
  for (const width of [5, 2049, 32001, 151936]) {
    const rows = width > 50000 ? 64 : 150;
    const rng = Rng.fromSeed(width);
    const rand = () => rng.next();
    // Half the rows continuous, half on 32 levels (ties at every cut).
    const table = Array.from({ length: rows * width }, (_, i) => (Math.floor(i / width) % 2 ? rand() * 16 - 8 : Math.floor(rand() * 32) / 4 - 4));
    const tensors = new Map([['logits', tensorOf('f32', [rows, width], table)]]);
    const graph = opGraph(tensors, { layers: 0, kvHeads: 1, headDim: 1 }, (_b, input) => input('logits'));
    const program = await backend.compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 16, blockSize: 16 } });
    for (const n of [1, 7, 64, 150].filter((k) => k <= rows)) {
      for (const mode of ['1', '8', 'auto']) {
        await runCase('sample sweep', `width ${width}, ${n} rows, cluster ${mode}`, () =>
          withMode(mode, async () => {
            const batch = stepBatch([{ tokens: Array.from({ length: n }, (_, i) => (i * 7) % rows), cached: 0, blocks: Array.from({ length: 10 }, (_, i) => i) }], 16, 'all');
            const sample = Array.from({ length: n }, (_, r) => {
              const s = SETTINGS[r % SETTINGS.length];
              const penalized = s.repetitionPenalty === 1 ? new Int32Array(0) : Int32Array.from(new Set(Array.from({ length: 40 }, () => Math.floor(rand() * width))));
              return { ...s, uniform: rand(), penalized };
            });
            const logits = await program.run(batch);
            const ids = await program.runSample(batch, sample);
            const want = host.pick(logits, sample, width);
            for (let r = 0; r < n; r++) if (ids[r] !== want[r]) throw new Error(`row ${r} (${JSON.stringify({ ...sample[r], penalized: sample[r].penalized.length })}): GPU picked ${ids[r]}, TokenFilter ${want[r]}`);
          }),
        );
      }
    }
    await program.dispose();
    save();
  }
  log('sample: done');
}
