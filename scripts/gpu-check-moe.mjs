// The Mixture-of-Experts part of the GPU check (scripts/gpu-check.mjs calls checkMoe; run it alone with
// ZINFER_GPU_CHECK_ONLY=moe). Against the reference backend on random shapes (odd sizes; topK 1/2/4;
// experts 3/8/60; rows 1, 2, 7, 64, 300: the GEMV path (at 2–8 rows in the 16-bit modes on the tensor cores
// where the sizes are whole 16-byte vectors), the dense path, and at 300 rows each moePrefill mode (grouped,
// also split in passes; dense passes; tiles); f32 ≤ 1e-3 relative, f16/bf16 ≤ 2e-2):
//   - moeRouter: ids equal to the reference's (a swap only between probabilities within the tolerance),
//     routing weights within the tolerance, and Program.expertLoad equal to the counts of the routing;
//   - moeExperts: fed the GPU's own routing on both sides (so a near-tie cannot make the comparison
//     meaningless), every mode, and an expert-parallel subset (experts this program does not hold give 0);
//   - sigmoidGate;
// then the MoE fixtures (Mixtral, Qwen2-MoE with and without norm_topk_prob: f32 logits ≤ 1e-3, greedy
// identical to transformers; a 112-token prompt in each prefill mode against the reference), and a timing of
// Mixtral-8x7B-shaped layers (bf16, hidden 4096, intermediate 14336, 8 experts, top-2;
// ZINFER_MOE_TIMING_SHAPE=qwen2moe: Qwen1.5-MoE-A2.7B's 60 experts of top-4) at steps of 1, 8 and 64 rows
// (ZINFER_MOE_TIMING_ROWS; past 64, each prefill mode), with the GB/s of moeExperts over the expert bytes the
// step reads (from expertLoad) next to the device's read bandwidth (gpu-check-moe-timing.mjs; timing skipped
// in dry mode).
// Every group saves results; ZINFER_MOE_BUDGET_S (default 200) bounds the whole part.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { againstTransformers, runFixture, sameAsSingle } from './gpu-fixture-parity.mjs';

const NO_KV = { layers: 0, kvHeads: 1, headDim: 1 };

export async function checkMoe(env) {
  const { log, runCase, save, results, makeBackend, opts, oracle, core, testing, cuda, dry, ROOT } = env;
  const { GraphBuilder, Rng } = core;
  const { memoryWeights, randomTensor, stepBatch, range, relativeDifference, weightInfos } = testing;
  const budgetMs = 1000 * Number(process.env.ZINFER_MOE_BUDGET_S ?? 200);
  const start = Date.now();
  const inTime = (share = 1) => Date.now() < start + share * budgetMs; // random shapes get 60%: fixtures and timing still run
  const skipped = [];
  /** The op graph: x = embedding(ids) of table 'x', then `build`. */
  const graphOf = (tensors, build) => {
    const b = new GraphBuilder(weightInfos(tensors), NO_KV);
    return b.build(build(b, b.embedding(b.inputs.tokenIds, 'x')));
  };

  async function run(be, graph, tensors, rows, after) {
    const p = await be.compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: Math.ceil(rows / 16), blockSize: 16 } });
    try {
      const out = await p.run(stepBatch([{ tokens: range(rows), cached: 0, blocks: range(Math.ceil(rows / 16)) }], 16, 'all'));
      return { out, extra: after ? await after(p) : null };
    } finally {
      await p.dispose();
    }
  }

  // ------------------------------------------------------------------------------------------------
  const shapes = [
    // Rows of several vectors a lane in the router, more experts than a block's warps; the RMSNorm before it fused.
    { hidden: 2048, inter: 40, experts: 8, topK: 2, norm: true },
    { hidden: 1024, inter: 24, experts: 60, topK: 4, norm: true },
    { hidden: 67, inter: 45, experts: 3, topK: 1 },
    { hidden: 128, inter: 96, experts: 8, topK: 2 },
    { hidden: 256, inter: 88, experts: 60, topK: 4 },
    { hidden: 200, inter: 136, experts: 8, topK: 4, held: [0, 3, 5, 6] },
  ];
  const modes = [
    { w: 'f32', act: 'f32', tol: 1e-3 }, { w: 'bf16', act: 'f32', tol: 1e-3 }, { w: 'f16', act: 'f16', tol: 2e-2 }, { w: 'bf16', act: 'bf16', tol: 2e-2 },
  ];
  for (const s of shapes) {
    for (const m of modes) {
      for (const rows of [1, 2, 7, 64, 300]) {
        const name = `h${s.hidden} i${s.inter} e${s.experts} top${s.topK}${s.held ? ` holds ${s.held.join('/')}` : ''} rows ${rows}, ${m.w} w ${m.act} act`;
        if (!inTime(0.6)) {
          skipped.push(name);
          continue;
        }
        const tensors = layerTensors(testing, Rng.fromSeed(s.hidden * 1000 + rows), s, m.w, rows);
        const be = makeBackend({ ...opts, activations: m.act });
        await runCase('moe router', name, async () => {
          const g = graphOf(tensors, (b, x) => b.moeRouter(x, 'router', s.topK, true));
          const { out, extra: load } = await run(be, g, tensors, rows, (p) => p.expertLoad?.());
          const want = (await run(oracle, g, tensors, rows)).out;
          const probs = refProbs(core, tensors, s, rows);
          const msg = compareRouting(out, want, probs, rows, s.topK, m.tol);
          const counts = new Float64Array(s.experts);
          for (let r = 0; r < rows; r++) for (let k = 0; k < s.topK; k++) counts[out[r * 2 * s.topK + k]]++;
          if (!dry && (!load || load.length !== 1 || load[0].some((c, e) => c !== counts[e]))) throw new Error(`expertLoad ${load?.[0]} != routed counts ${counts}`);
          return `${msg}; expertLoad = counts`;
        });
        if (s.norm && m.act === 'f32') {
          // The RMSNorm fused into the router (its first reader), which writes the normalized rows the experts
          // read: the whole layer against the reference's. f32 activations only: both sides route on their own,
          // and a 16-bit rounding of the normalized rows can turn a near-tie the other way (seen at 64 rows).
          await runCase('moe router norm', name, async () => {
            const nt = new Map([...tensors, ['nw', randomTensor(Rng.fromSeed(s.hidden + rows), 'f32', [s.hidden], 0.5)]]);
            const nw = nt.get('nw').data;
            for (let i = 0; i < nw.length; i++) nw[i] += 1;
            const g = graphOf(nt, (b, x) => {
              const n = b.rmsNorm(x, 'nw', 1e-5);
              return experts(b, n, b.moeRouter(n, 'router', s.topK, true), s.topK, range(s.experts));
            });
            const got = (await run(be, g, nt, rows)).out;
            const want = (await run(oracle, g, nt, rows)).out;
            const err = relativeDifference(got, want);
            if (!(err <= m.tol)) throw new Error(`relative error ${err.toExponential(2)} > ${m.tol}`);
            return `rel err ${err.toExponential(2)}`;
          });
        }
        await runCase('moe experts', name, async () => {
          const held = s.held ?? range(s.experts);
          const full = graphOf(tensors, (b, x) => experts(b, x, b.moeRouter(x, 'router', s.topK, true), s.topK, held));
          const routed = graphOf(tensors, (b, x) => b.moeRouter(x, 'router', s.topK, true));
          const routing = (await run(be, routed, tensors, rows)).out; // the GPU's routing, fed to the reference
          const refTensors = new Map([...tensors, ['routing', { dtype: 'f32', shape: [rows, 2 * s.topK], data: routing }]]);
          const ref = graphOf(refTensors, (b, x) => experts(b, x, b.embedding(b.inputs.tokenIds, 'routing'), s.topK, held));
          const want = (await run(oracle, ref, refTensors, rows)).out;
          // Past 64 rows, every prefill mode (moePrefill), and the grouped path split in passes of 64 rows (a
          // 1 MiB pass scratch).
          const prefill = rows > 64 && cuda?.moePrefill ? [...cuda.MOE_PREFILL_MODES, 'grouped in passes'] : [null];
          const before = cuda?.moePrefill?.get();
          const errs = [];
          try {
            for (const mode of prefill) {
              if (mode) cuda.moePrefill.set(mode === 'grouped in passes' ? 'grouped' : mode);
              if (mode === 'grouped in passes') cuda.setMoeGroupedPassBytes(2 ** 20);
              const err = relativeDifference((await run(be, full, tensors, rows)).out, want);
              if (!(err <= m.tol)) throw new Error(`relative error ${err.toExponential(2)} > ${m.tol}${mode ? ` (prefill ${mode})` : ''}`);
              errs.push(`${err.toExponential(2)}${mode ? ` ${mode}` : ''}`);
            }
          } finally {
            if (before) cuda.moePrefill.set(before);
            cuda?.setMoeGroupedPassBytes?.(256 * 2 ** 20);
          }
          return `rel err ${errs.join(', ')} (${rows <= 8 ? 'gemv' : rows <= 64 ? 'dense or grouped' : 'prefill'} path)`;
        });
      }
      save();
    }
  }
  for (const act of ['f32', 'f16', 'bf16']) {
    await runCase('moe sigmoid gate', `rows 37 width 131 (${act})`, async () => {
      const rng = Rng.fromSeed(5);
      const tensors = new Map([['x', randomTensor(rng, 'f32', [37, 131])], ['g', randomTensor(rng, 'f32', [37, 1], 3)]]);
      const g = graphOf(tensors, (b) => b.sigmoidGate(b.embedding(b.inputs.tokenIds, 'x'), b.embedding(b.inputs.tokenIds, 'g')));
      const got = (await run(makeBackend({ ...opts, activations: act }), g, tensors, 37)).out;
      const want = (await run(oracle, g, tensors, 37)).out;
      const err = relativeDifference(got, want);
      const tol = act === 'f32' ? 1e-5 : 1e-2;
      if (!(err <= tol)) throw new Error(`relative error ${err.toExponential(2)} > ${tol}`);
      return `rel err ${err.toExponential(2)}`;
    });
  }
  if (skipped.length) log(`moe: ${skipped.length} random-shape cases skipped for the time budget (first: ${skipped[0]})`);
  save();

  // ------------------------------------------------------------------------------------------------
  const FIXTURES = join(ROOT, 'fixtures/moe');
  const archs = (() => {
    try {
      return readdirSync(FIXTURES).filter((x) => statSync(join(FIXTURES, x)).isDirectory());
    } catch {
      return [];
    }
  })();
  if (!archs.length) log(`moe: no fixtures at ${FIXTURES} (bundle made before fixtures/moe was carried?)`);
  for (const arch of archs) {
    await runCase('moe fixtures', `${arch}: prompt logits and 16 greedy tokens vs transformers (f32)`, async () => {
      return againstTransformers(core, join(FIXTURES, arch), makeBackend(opts));
    });
    // A prompt past 64 rows through the whole model, each prefill mode (grouped, dense, tiles; their MoE steps
    // only: transformers' stored logits are of a short prompt) against the reference backend.
    await runCase('moe fixtures prompt paths', `${arch}: a 112-token prompt, prompt logits and 8 greedy tokens vs the reference, each prefill mode (f32)`, async () => {
      const dir = join(FIXTURES, arch);
      const vocab = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).vocab_size;
      const ids = Array.from({ length: 112 }, (_, i) => (i * 37 + 11) % vocab);
      const want = await runFixture(core, dir, oracle, null, ids);
      const before = cuda?.moePrefill?.get();
      const out = [];
      try {
        for (const mode of cuda?.moePrefill ? cuda.MOE_PREFILL_MODES : [null]) {
          if (mode) cuda.moePrefill.set(mode);
          out.push(`${mode ?? 'default'}: ${sameAsSingle(await runFixture(core, dir, makeBackend(opts), null, ids), want)}`);
        }
      } finally {
        if (before) cuda.moePrefill.set(before);
      }
      return out.join('; ');
    });
  }
  save();

  // ------------------------------------------------------------------------------------------------
  if (!inTime()) {
    log('moe: decode timing skipped for the time budget');
    return;
  }
  const { timeMoeLayers, TIMING_SHAPES } = await import('./gpu-check-moe-timing.mjs');
  const timed = TIMING_SHAPES[process.env.ZINFER_MOE_TIMING_SHAPE || 'mixtral'];
  if (!timed) throw new Error(`ZINFER_MOE_TIMING_SHAPE is '${process.env.ZINFER_MOE_TIMING_SHAPE}'; it takes ${Object.keys(TIMING_SHAPES).join(', ')}`);
  const rowsList = (process.env.ZINFER_MOE_TIMING_ROWS || '1,8,64').split(',').map(Number);
  await runCase('moe timing', `moeExperts, ${dry ? 'tiny' : timed.name} layer shape, bf16, steps of ${rowsList.join(', ')} rows`, async () => {
    let readGBps = results.microbench?.readGBps ?? null; // the bench group's probe, when it ran first
    if (!readGBps && !dry && cuda?.cudaMicrobench) readGBps = cuda.cudaMicrobench(0, { readOnly: true }).readGBps;
    const shape = dry ? { hidden: 64, inter: 96, experts: 8, topK: 2 } : timed;
    results.moeTiming = await timeMoeLayers({ core, testing, cuda, makeBackend, opts, readGBps, shape, rowsList, prefillModes: cuda?.MOE_PREFILL_MODES, runs: dry ? 2 : 20 });
    save();
    return results.moeTiming.map((t) => t.summary).join('; ');
  });
  save();
}

function experts(b, x, routing, topK, held) {
  return b.moeExperts(x, routing, { topK, fn: 'silu', experts: held.map((id) => ({ id, gate: `g${id}`, up: `u${id}`, down: `d${id}` })) });
}

/** Router and the held experts' weights in dtype w; 'x' [rows, hidden] f32 (row r is token r's input). */
function layerTensors(testing, rng, s, w, rows) {
  const { randomTensor } = testing;
  const t = new Map([['x', randomTensor(rng, 'f32', [rows, s.hidden])], ['router', randomTensor(rng, w, [s.experts, s.hidden], 1 / Math.sqrt(s.hidden))]]);
  for (const e of s.held ?? Array.from({ length: s.experts }, (_, i) => i)) {
    t.set(`g${e}`, randomTensor(rng, w, [s.inter, s.hidden], 1 / Math.sqrt(s.hidden)));
    t.set(`u${e}`, randomTensor(rng, w, [s.inter, s.hidden], 1 / Math.sqrt(s.hidden)));
    t.set(`d${e}`, randomTensor(rng, w, [s.hidden, s.inter], 1 / Math.sqrt(s.inter)));
  }
  return t;
}

/** Softmax probabilities of the router in doubles, [rows][experts]: to tell a near-tie from a wrong id. */
function refProbs(core, tensors, s, rows) {
  const x = tensors.get('x').data;
  const wt = tensors.get('router');
  const w = core.toF32(wt.dtype, wt.data);
  const out = [];
  for (let r = 0; r < rows; r++) {
    const l = [];
    for (let e = 0; e < s.experts; e++) {
      let acc = 0;
      for (let i = 0; i < s.hidden; i++) acc += x[r * s.hidden + i] * w[e * s.hidden + i];
      l.push(acc);
    }
    const m = Math.max(...l);
    const ex = l.map((v) => Math.exp(v - m));
    const sum = ex.reduce((a, b) => a + b, 0);
    out.push(ex.map((v) => v / sum));
  }
  return out;
}

/**
 * GPU routing vs the reference's: an id may differ only where the two experts' probabilities are within
 * tol of each other (a near-tie the rounding may flip); weights compared where ids agree. Throws on a
 * real difference; returns a summary.
 */
function compareRouting(got, want, probs, rows, topK, tol) {
  let flips = 0;
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < topK; k++) {
      const [gi, wi] = [got[r * 2 * topK + k], want[r * 2 * topK + k]];
      if (gi !== wi) {
        const [pg, pw] = [probs[r][gi], probs[r][wi]];
        if (!(pg !== undefined && Math.abs(pg - pw) <= tol * Math.max(pw, 1e-30))) {
          throw new Error(`row ${r} k ${k}: expert ${gi} (p ${pg}) where the reference routes to ${wi} (p ${pw})`);
        }
        flips++;
        continue;
      }
      const [gw, ww] = [got[r * 2 * topK + topK + k], want[r * 2 * topK + topK + k]];
      worst = Math.max(worst, Math.abs(gw - ww) / Math.max(Math.abs(ww), 1e-6));
    }
  }
  if (!(worst <= tol)) throw new Error(`routing weight relative error ${worst.toExponential(2)} > ${tol}`);
  return `ids agree${flips ? ` but ${flips} near-tie swaps` : ''}, weights rel err ${worst.toExponential(2)}`;
}
