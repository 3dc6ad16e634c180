// Timing of moeExperts on Mixtral-8x7B-shaped layers (bf16; hidden 4096, intermediate 14336, 8 experts,
// top-2), or Qwen1.5-MoE-A2.7B-shaped ones (hidden 2048, expert intermediate 1408, 60 experts, top-4; its
// shared expert is a plain MLP, not timed here), for scripts/gpu-check-moe.mjs. A graph of L router + experts
// + residual layers against the same graph with no layers: the difference over L is one layer's time,
// without the step's fixed costs. Every layer has its own names for one shared set of expert tensors, so
// each gets its own device copy (2.8 GB: far beyond L2, every layer reads its experts from HBM) uploaded
// side by side, as a model's are: steps of 9–64 rows then take the dense path they take in a model. The
// rows are one sequence's (a prompt step).
// Bytes are those a step reads: the distinct routed experts on the GEMV path (up to 8 rows), every local
// expert once a pass on the dense path (densePassRows), each routed expert once on the grouped path (its
// passes, where scratch splits a step, not counted),
// Σ ceil(tokens/8) per expert on the tile path (one read per tile of 8; from L2 where tiles of an expert meet
// there, so its GB/s may pass the read rate). Steps of more than 64 rows are timed with each prefill mode in
// `prefillModes` (moePrefill: auto, grouped, dense, tiles), with the TFLOP/s of the routed rows' work (rows ×
// top-k × 3 GEMMs of hidden × intermediate).

export const MIXTRAL = { hidden: 4096, inter: 14336, experts: 8, topK: 2 };
export const TIMING_SHAPES = { mixtral: { name: 'Mixtral-8x7B', ...MIXTRAL }, qwen2moe: { name: 'Qwen1.5-MoE-A2.7B', hidden: 2048, inter: 1408, experts: 60, topK: 4 } };
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

/** Layer l's names of expert e's weights (every layer's name the same tensors). */
const expertNames = (l, e) => ({ gate: `l${l}.g${e}`, up: `l${l}.u${e}`, down: `l${l}.d${e}` });

function layerGraph(core, testing, tensors, layers, { experts: count, topK }) {
  const b = new core.GraphBuilder(testing.weightInfos(tensors), NO_KV);
  let h = b.embedding(b.inputs.tokenIds, 'emb');
  for (let l = 0; l < layers; l++) {
    const experts = Array.from({ length: count }, (_, id) => ({ id, ...expertNames(l, id) }));
    const routing = b.moeRouter(h, 'router', topK, true);
    h = b.add(h, b.moeExperts(h, routing, { topK, fn: 'silu', experts }));
  }
  return b.build(h);
}

/** The path moe-launch.ts takes for a step of `rows` rows over `experts` local experts, in the prefill mode set now. */
function pathOf(cuda, rows, experts, topK) {
  if (rows <= 8) return 'gemv';
  return cuda?.moeStepPath ? cuda.moeStepPath(rows, experts, topK, false) : 'dense';
}

/** Expert bytes a step of `rows` rows reads on `path`, from each expert's tokens in it. */
function stepBytes(cuda, path, rows, tokens, shape) {
  const expertBytes = 3 * shape.hidden * shape.inter * 2;
  const distinct = tokens.filter((t) => t > 0).length * expertBytes;
  if (path === 'gemv') return distinct;
  if (path === 'tiles') return tokens.reduce((a, t) => a + Math.ceil(t / 8), 0) * expertBytes;
  const d = { count: tokens.length, gateUp: 0n, down: 0n, hidden: shape.hidden, inter: shape.inter };
  if (path === 'grouped') return distinct; // the routed experts, once a pass (counted as one pass)
  const passRows = cuda?.densePassRows ? cuda.densePassRows(d, rows, 2) : 64;
  return Math.ceil(rows / passRows) * tokens.length * expertBytes;
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

/** Times steps of each of `rowsList` rows; returns one record per row count and prefill mode (ms per layer, bytes, GB/s). */
export async function timeMoeLayers({ core, testing, cuda, makeBackend, opts, readGBps, shape = MIXTRAL, rowsList = [1, 64], prefillModes = ['tiles'], runs = 20 }) {
  const { hidden: HIDDEN, inter: INTER, experts: EXPERTS } = shape;
  const rng = core.Rng.fromSeed(42);
  const tensors = new Map([['emb', bf16Tensor(rng, [64, HIDDEN], 1)], ['router', bf16Tensor(rng, [EXPERTS, HIDDEN], 1 / 64)]]);
  for (let e = 0; e < EXPERTS; e++) {
    const g = bf16Tensor(rng, [INTER, HIDDEN], 1 / 64);
    const u = bf16Tensor(rng, [INTER, HIDDEN], 1 / 64);
    const d = bf16Tensor(rng, [HIDDEN, INTER], 1 / 120);
    for (let l = 0; l < LAYERS; l++) {
      const n = expertNames(l, e);
      tensors.set(n.gate, g).set(n.up, u).set(n.down, d);
    }
  }
  const expertBytes = 3 * HIDDEN * INTER * 2;
  const be = makeBackend({ ...opts, activations: 'bf16', poison: false });
  const weights = testing.memoryWeights(tensors);
  const kvCache = { numBlocks: 4, blockSize: 16 };
  const full = await be.compile(layerGraph(core, testing, tensors, LAYERS, shape), weights, { kvCache });
  const base = await be.compile(layerGraph(core, testing, tensors, 0, shape), weights, { kvCache });
  const load = async () => (full.expertLoad ? full.expertLoad() : null);
  const modeBefore = cuda?.moePrefill?.get();
  const out = [];
  try {
    for (const rows of rowsList) {
      for (const mode of rows > 64 && cuda?.moePrefill ? prefillModes : [null]) {
        if (mode) cuda.moePrefill.set(mode);
        const batch = testing.stepBatch([{ tokens: testing.range(rows).map((i) => i % 64), cached: 0, blocks: testing.range(Math.ceil(rows / 16)) }], 16, 'all');
        const before = await load();
        const msFull = await medianMs(full, batch, runs);
        const after = await load();
        const msBase = await medianMs(base, batch, runs);
        const steps = runs + 3;
        const path = pathOf(cuda, rows, EXPERTS, shape.topK);
        let readBytes = 0;
        let distinctBytes = 0;
        after?.forEach((layer, l) => {
          const tokens = layer.map((n, e) => (n - before[l][e]) / steps); // the same routing every step
          distinctBytes += tokens.filter((t) => t > 0).length * expertBytes;
          readBytes += stepBytes(cuda, path, rows, tokens, shape);
        });
        const msLayer = (msFull - msBase) / LAYERS;
        const GBps = readBytes / LAYERS / (msLayer * 1e6);
        const routedTflops = (rows * shape.topK * 3 * 2 * HIDDEN * INTER) / (msLayer * 1e9);
        const r = {
          rows, prefill: mode, path, msLayer, msStep: msFull, msBase, readBytesPerLayer: readBytes / LAYERS, distinctBytesPerLayer: distinctBytes / LAYERS, GBps,
          distinctGBps: distinctBytes / LAYERS / (msLayer * 1e6), readGBps, fractionOfRead: readGBps ? GBps / readGBps : null,
          distinctFractionOfRead: readGBps ? distinctBytes / LAYERS / (msLayer * 1e6) / readGBps : null, routedTflops,
        };
        const pct = (f) => (f === null ? '' : ` = ${(100 * f).toFixed(0)}% of read ${readGBps.toFixed(0)} GB/s`);
        const work = rows > 64 ? `; routed work ${routedTflops.toFixed(1)} TFLOP/s` : '';
        r.summary = `batch ${rows}${mode ? ` (${mode}: ${path})` : ''}: ${(msLayer * 1000).toFixed(1)} us/layer, ${(r.readBytesPerLayer / 2 ** 20).toFixed(0)} MiB read, ${GBps.toFixed(0)} GB/s${pct(r.fractionOfRead)}; ${(r.distinctBytesPerLayer / 2 ** 20).toFixed(0)} MiB of distinct experts at ${r.distinctGBps.toFixed(0)} GB/s${pct(r.distinctFractionOfRead)}${work}`;
        out.push(r);
      }
    }
  } finally {
    if (modeBefore) cuda.moePrefill.set(modeBefore);
    await full.dispose();
    await base.dispose();
  }
  return out;
}
