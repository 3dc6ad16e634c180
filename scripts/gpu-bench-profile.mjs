// Issue 4's profiling steps for scripts/gpu-bench.mjs (carried in the bundle with it): where a decode
// step's time goes, kernel by kernel, and the decode-GEMV variants against each other on one program.
//   profileDecode: one eager (uncaptured) decode step per GEMV variant, every launch timed with a pair of
//     CUDA events (kernel-profile.ts): per GEMV shape its µs and GB/s against the read bandwidth, µs for
//     the rest; the decode attention's K/V bytes over its µs (its GB/s) when the cache geometry is given.
//   decodeByVariant: the same program's graphed decode (Program.run and runArgmax) per variant, graphs
//     recaptured after each switch; the greedy ids must be the same for every variant (bit-identical GEMVs).
// `node scripts/gpu-bench-profile.mjs --self-check` runs both on a fake program here (no GPU): the control
// flow, the JSON shapes and the table.

/** A decode batch of `rows` sequences at `context` cached tokens, sequence i on its own cache blocks. */
export function decodeBatch(stepBatch, { rows, context, t = 0, blockSize = 16, vocab, extra = 48 }) {
  const per = Math.ceil((context + extra) / blockSize);
  const parts = Array.from({ length: rows }, (_, i) => ({ tokens: [(7 * t + i) % vocab], cached: context + t, blocks: Array.from({ length: per }, (_, b) => i * per + b) }));
  return stepBatch(parts, blockSize, 'last');
}

/**
 * Profiles one eager decode step per variant (a warm-up step first). `kv` = { bytesPerToken } (K and V
 * of one layer, one token) turns the decode-attention rows' µs into GB/s. Returns { [variant]: { kernels,
 * kernelSumMs, gemvSumMs, attention } }.
 */
export async function profileDecode({ program, profileStep, summarizeProfile, stepBatch, variants, setVariant, rows, context, vocab, readGBps, kv = null }) {
  const out = {};
  for (const v of variants) {
    setVariant(v);
    await profileStep(program, decodeBatch(stepBatch, { rows, context, vocab, t: 0 })); // loads the variant's kernels
    const timings = await profileStep(program, decodeBatch(stepBatch, { rows, context, vocab, t: 1 }));
    const kernels = summarizeProfile(timings, readGBps);
    for (const k of kernels) {
      if (kv && /^(attn_decode|attention_partial)/.test(k.what)) {
        const bytes = rows * (context + 2) * kv.bytesPerToken; // every sequence's K and V, read once a layer
        k.GBps = bytes / (k.medianUs * 1e3);
        k.fractionOfRead = readGBps ? k.GBps / readGBps : null;
      }
    }
    const sum = (f) => timings.filter(f).reduce((a, t) => a + t.us, 0) / 1000;
    out[v] = {
      kernels: kernels.map((k) => ({ ...k, medianUs: round(k.medianUs, 2), totalUs: round(k.totalUs, 1), GBps: k.GBps === null ? null : round(k.GBps, 0), fractionOfRead: k.fractionOfRead === null ? null : round(k.fractionOfRead, 3) })),
      launches: timings.length,
      kernelSumMs: round(sum(() => true), 3),
      gemvSumMs: round(sum((t) => t.shape !== null), 3),
    };
  }
  return out;
}

/**
 * Graphed decode ms per variant: `time(argmax)` → median ms of Program.run (runArgmax when true); `ids()`
 * → the greedy ids of one fixed step. Graphs are dropped after each switch. Returns { ms, argmaxMs,
 * sameIds, ids }.
 */
export async function decodeByVariant({ program, variants, setVariant, time, ids }) {
  const ms = {};
  const argmaxMs = {};
  const seen = {};
  for (const v of variants) {
    setVariant(v);
    program.resetGraphs();
    ms[v] = round(await time(false), 3);
    argmaxMs[v] = round(await time(true), 3);
    seen[v] = Array.from(await ids());
  }
  const first = JSON.stringify(seen[variants[0]]);
  return { ms, argmaxMs, sameIds: variants.every((v) => JSON.stringify(seen[v]) === first), ids: seen };
}

/** Lines of a profile table: one per kernel row of a variant. */
export function profileTable(profile, variant) {
  const p = profile[variant];
  if (!p) return [];
  const lines = [`  ${variant}: ${p.launches} launches, kernels ${p.kernelSumMs} ms (GEMVs and GEMMs ${p.gemvSumMs} ms)`];
  for (const k of p.kernels) {
    const bw = k.GBps === null ? '' : `  ${String(k.GBps).padStart(5)} GB/s = ${(100 * (k.fractionOfRead ?? 0)).toFixed(0)}% of read`;
    lines.push(`    ${k.what.padEnd(48)} ×${String(k.count).padStart(3)} ${k.medianUs.toFixed(1).padStart(7)} us${bw}`);
  }
  return lines;
}

function round(x, d) {
  return x === null || !Number.isFinite(x) ? null : Number(x.toFixed(d));
}

// ---------------------------------------------------------------------------------------------------
if (process.argv[2] === '--self-check') await selfCheck();

/** A fake program and profiler with the real ones' shapes: checks the flow and the output here. */
async function selfCheck() {
  const assert = (ok, what) => {
    if (!ok) throw new Error(`self-check: ${what}`);
  };
  const stepBatch = (parts) => ({ tokenIds: parts.map((p) => p.tokens[0]), parts });
  let variant = 'v1';
  let resets = 0;
  const program = {
    resetGraphs: () => resets++,
    run: async () => new Float32Array(4),
    runArgmax: async (b) => Int32Array.from(b.tokenIds, (t) => t + 1),
  };
  const gemv = (n, inF, us) => ({ kernel: `gemv1${{ v1: '', roll: 'r', occ: 'o' }[variant]}_f16_f16`, grid: { x: n / 4 }, block: 128, us, shape: `${inF}→${n}`, weightBytes: n * inF * 2 });
  const profileStep = async (_p, batch) => {
    assert(batch.tokenIds.length === 2, 'two decode rows');
    return [gemv(12288, 4096, 40), { kernel: 'rope_kv_f16', grid: { x: 32 }, block: 128, us: 3, shape: null, weightBytes: null }, { kernel: 'attn_decode4_f16', grid: { x: 1 }, block: 128, us: 5, shape: null, weightBytes: null }, gemv(4096, 4096, 15)];
  };
  const summarizeProfile = (ts, read) => ts.map((t) => ({ what: t.shape ? `${t.kernel} ${t.shape}` : t.kernel, count: 1, medianUs: t.us, totalUs: t.us, GBps: t.weightBytes ? t.weightBytes / (t.us * 1e3) : null, fractionOfRead: t.weightBytes ? t.weightBytes / (t.us * 1e3) / read : null }));
  const variants = ['v1', 'roll', 'occ'];
  const setVariant = (v) => (variant = v);
  const profile = await profileDecode({ program, profileStep, summarizeProfile, stepBatch, variants, setVariant, rows: 2, context: 100, vocab: 32000, readGBps: 3000, kv: { bytesPerToken: 2 * 4096 * 2 } });
  assert(Object.keys(profile).join() === variants.join(), 'a profile per variant');
  assert(profile.occ.kernels[0].what.startsWith('gemv1o_'), 'the variant is the one launched');
  assert(profile.v1.kernelSumMs === 0.063 && profile.v1.gemvSumMs === 0.055, `sums ${profile.v1.kernelSumMs} ${profile.v1.gemvSumMs}`);
  assert(profile.v1.kernels[2].GBps === round((2 * 102 * 16384) / 5e3, 0), 'attention GB/s from the K/V bytes');
  const byVariant = await decodeByVariant({ program, variants, setVariant, time: async (argmax) => (argmax ? 5.5 : 5.6), ids: () => program.runArgmax(stepBatch([{ tokens: [3] }])) });
  assert(resets === 3 && byVariant.sameIds && byVariant.ms.occ === 5.6 && byVariant.argmaxMs.roll === 5.5, JSON.stringify(byVariant));
  for (const line of profileTable(profile, 'v1')) console.log(line);
  console.log(JSON.stringify(byVariant));
  console.log('gpu-bench-profile self-check: ok');
}
