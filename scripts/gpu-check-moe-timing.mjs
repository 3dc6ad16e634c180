// Decode timing of moeExperts on one Mixtral-8x7B-shaped layer (bf16; hidden 4096, intermediate 14336,
// 8 experts, top-2), for scripts/gpu-check-moe.mjs. A graph of L router + experts + residual layers
// sharing one set of weights (2.8 GB: far beyond L2, so every layer reads its experts from HBM) against
// the same graph with no layers: the difference over L is one layer's time, without the step's fixed
// costs. Bytes are those of the experts each layer routes to (Program.expertLoad): distinct experts for the
// GEMV path (each read once), Σ ceil(tokens/8) per expert for the grouped path (one read per tile of 8).
export const MIXTRAL = { hidden: 4096, inter: 14336, experts: 8, topK: 2 };
const LAYERS = 4;
const NO_KV = { layers: 0, kvHeads: 1, headDim: 1 };

/** A bf16 tensor of small random values: one random block of 64 Ki repeated (fast to make for GBs). */
function bf16Tensor(rng, shape, std) {
  const n = shape.reduce((a, b) => a * b, 1);
  const block = new Uint16Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < block.length; i++) {
    f[0] = (rng.next() * 2 - 1) * std * 1.7;
    block[i] = u[0] >>> 16;
  }
  const data = new Uint16Array(n);
  for (let i = 0; i < n; i += block.length) data.set(block.subarray(0, Math.min(block.length, n - i)), i);
  return { dtype: 'bf16', shape, data };
}

function layerGraph(core, testing, tensors, layers, { experts: count, topK }) {
  const b = new core.GraphBuilder(testing.weightInfos(tensors), NO_KV);
  let h = b.embedding(b.inputs.tokenIds, 'emb');
  const experts = Array.from({ length: count }, (_, id) => ({ id, gate: `g${id}`, up: `u${id}`, down: `d${id}` }));
  for (let l = 0; l < layers; l++) {
    const routing = b.moeRouter(h, 'router', topK, true);
    h = b.add(h, b.moeExperts(h, routing, { topK, fn: 'silu', experts }));
  }
  return b.build(h);
}

async function medianMs(program, batch, runs) {
  for (let i = 0; i < 3; i++) await program.run(batch);
  const ts = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await program.run(batch);
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

/** Times batch sizes `rowsList`; returns one record per batch size (ms per layer, bytes, GB/s). */
export async function timeMixtralLayers({ core, testing, makeBackend, opts, readGBps, shape = MIXTRAL, rowsList = [1, 64], runs = 20 }) {
  const { hidden: HIDDEN, inter: INTER, experts: EXPERTS } = shape;
  const rng = core.Rng.fromSeed(42);
  const tensors = new Map([['emb', bf16Tensor(rng, [64, HIDDEN], 1)], ['router', bf16Tensor(rng, [EXPERTS, HIDDEN], 1 / 64)]]);
  for (let e = 0; e < EXPERTS; e++) {
    tensors.set(`g${e}`, bf16Tensor(rng, [INTER, HIDDEN], 1 / 64));
    tensors.set(`u${e}`, bf16Tensor(rng, [INTER, HIDDEN], 1 / 64));
    tensors.set(`d${e}`, bf16Tensor(rng, [HIDDEN, INTER], 1 / 120));
  }
  const expertBytes = 3 * HIDDEN * INTER * 2;
  const be = makeBackend({ ...opts, activations: 'bf16', poison: false });
  const weights = testing.memoryWeights(tensors);
  const kvCache = { numBlocks: 4, blockSize: 16 };
  const full = await be.compile(layerGraph(core, testing, tensors, LAYERS, shape), weights, { kvCache });
  const base = await be.compile(layerGraph(core, testing, tensors, 0, shape), weights, { kvCache });
  const load = async () => (full.expertLoad ? full.expertLoad() : null);
  const out = [];
  try {
    for (const rows of rowsList) {
      const batch = testing.stepBatch([{ tokens: testing.range(rows).map((i) => i % 64), cached: 0, blocks: testing.range(Math.ceil(rows / 16)) }], 16, 'all');
      const before = await load();
      const msFull = await medianMs(full, batch, runs);
      const after = await load();
      const msBase = await medianMs(base, batch, runs);
      const steps = runs + 3;
      let readBytes = 0;
      let distinctBytes = 0;
      after?.forEach((layer, l) => {
        for (let e = 0; e < EXPERTS; e++) {
          const tokens = (layer[e] - before[l][e]) / steps; // the same routing every step
          if (tokens > 0) distinctBytes += expertBytes;
          readBytes += (rows <= 8 ? Math.min(1, tokens) : Math.ceil(tokens / 8)) * expertBytes;
        }
      });
      const msLayer = (msFull - msBase) / LAYERS;
      const GBps = readBytes / LAYERS / (msLayer * 1e6);
      const r = {
        rows, msLayer, msStep: msFull, msBase, readBytesPerLayer: readBytes / LAYERS, distinctBytesPerLayer: distinctBytes / LAYERS, GBps,
        distinctGBps: distinctBytes / LAYERS / (msLayer * 1e6), readGBps, fractionOfRead: readGBps ? GBps / readGBps : null,
      };
      r.summary = `batch ${rows}: ${(msLayer * 1000).toFixed(1)} us/layer, ${(r.readBytesPerLayer / 2 ** 20).toFixed(0)} MiB read (${(r.distinctBytesPerLayer / 2 ** 20).toFixed(0)} MiB distinct experts), ${GBps.toFixed(0)} GB/s${readGBps ? ` = ${(100 * r.fractionOfRead).toFixed(0)}% of read ${readGBps.toFixed(0)} GB/s` : ''}`;
      out.push(r);
    }
  } finally {
    await full.dispose();
    await base.dispose();
  }
  return out;
}
