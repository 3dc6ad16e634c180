// Kernel profiling and the decode-GEMV variants, without a GPU: the GEMV shape and bytes read from a
// launch's arguments, the profile's grouping, a program step observed eagerly while its bucket has a
// graph, and every variant's entry points launched (and signature-checked) through a whole program.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, Rng } from '@zinfer/core';
import { memoryWeights, stepBatch, tinyLlama, TINY_LLAMA, type TinyLlamaConfig } from '@zinfer/core/testing';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { DECODE_ATTENTION_VARIANTS, decodeAttentionKernel, decodeAttentionVariant, parseDecodeAttentionVariant, setDecodeAttentionVariant } from '../src/cuda/decode-attention-variant.js';
import { autoGemvVariant, GEMV_KERNEL_VARIANTS, GEMV_VARIANTS, gemvBlockRows, gemvBlocks, gemvKernel, gemvLaunch, gemvVariant, parseGemvByEpilogue, parseGemvNarrow, parseGemvVariant, setGemvNarrow, setGemvVariant, setGemvVariantByEpilogue, setGemvWarpMaxIn, GEMV_WARP_MAX_IN } from '../src/cuda/gemv-variant.js';
import type { Dim3, KernelArg, LaunchHook } from '../src/cuda/gpu.js';
import { gemvShape, summarizeProfile, type KernelTiming } from '../src/cuda/kernel-profile.js';
import { loadKernelSources } from '../src/cuda/kernel-sources.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';

const SETTINGS: CompileSettings = {
  activations: 'auto', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const TINY16: TinyLlamaConfig = { ...TINY_LLAMA, headDim: 16 };

/** gemv.cu's argument list for a launch of these segment widths. */
const gemvArgs = (n: number[], inF: number, epi: number, norm: number): KernelArg[] => {
  const seg = (j: number) => (j < n.length ? [1n, 2n, 0n, n[j]] : [0n, 0n, 0n, 0]);
  return [...seg(0), ...seg(1), ...seg(2), 3n, 0n, 0n, 0n, 1e-5, 1, inF, epi, 1, norm, 0];
};

test('gemvShape reads the shape and weight bytes of a GEMV launch from its arguments; other kernels are not GEMVs', () => {
  assert.equal(gemvShape('gemv1_f16_f16', gemvArgs([4096, 4096, 4096], 4096, 0, 1)), { shape: '4096→3×4096 norm', weightBytes: 3 * 4096 * 4096 * 2 });
  assert.equal(gemvShape('gemv1o_bf16_bf16', gemvArgs([11008, 11008], 4096, 2, 1)), { shape: '4096→2×11008 gated norm', weightBytes: 2 * 11008 * 4096 * 2 });
  assert.equal(gemvShape('gemv8r_f32_f32', gemvArgs([4096], 11008, 1, 0)), { shape: '11008→4096 +residual', weightBytes: 4096 * 11008 * 4 });
  assert.equal(gemvShape('gemv1_f16_f16', gemvArgs([4096, 1024, 1024], 4096, 0, 1))?.shape, '4096→4096+1024+1024 norm');
  assert.is(gemvShape('rms_norm_f16', [0n, 0n, 0n, 4096, 1e-5]), null);
  assert.equal(gemvShape('cublas_gemm', [64, 11008, 4096, 2]), { shape: '4096→11008 ×64 rows', weightBytes: 11008 * 4096 * 2 });
});

test('summarizeProfile groups by kernel and shape in order, with the median and GB/s against the read bandwidth', () => {
  const t = (kernel: string, us: number, shape: string | null = null, weightBytes: number | null = null): KernelTiming => ({ kernel, grid: { x: 1 }, block: 128, us, shape, weightBytes });
  const rows = summarizeProfile([t('gemv1_f16_f16', 10, 'a', 30e6), t('rope_kv_f16', 4), t('gemv1_f16_f16', 12, 'a', 30e6), t('gemv1_f16_f16', 11, 'a', 30e6), t('gemv1_f16_f16', 50, 'b', 150e6)], 3000);
  assert.equal(rows.map((r) => [r.what, r.count, r.medianUs, r.totalUs]), [['gemv1_f16_f16 a', 3, 11, 33], ['rope_kv_f16', 1, 4, 4], ['gemv1_f16_f16 b', 1, 50, 50]]);
  assert.ok(Math.abs(rows[0].GBps! - 30e6 / 11e3) < 1e-9);
  assert.ok(Math.abs(rows[2].fractionOfRead! - 1) < 1e-9);
  assert.is(rows[1].GBps, null);
});

test('GEMV variants: their own entry points in the 16-bit modes (roll, occ: 1–2 rows; dense, eight: 1–8; mma: one for 1–8; same parameters as v1), v1 elsewhere', () => {
  const kernels = loadKernelSources().kernels;
  for (const rows of [1, 2, 4, 8]) {
    for (const [w, a] of [['f32', 'f32'], ['f16', 'f32'], ['bf16', 'f32'], ['f16', 'f16'], ['bf16', 'bf16']]) {
      const v1 = gemvKernel(rows, w, a, 'v1');
      assert.ok(kernels.has(v1), v1);
      for (const v of GEMV_KERNEL_VARIANTS) {
        const name = gemvKernel(rows, w, a, v);
        assert.equal(kernels.get(name)?.params, kernels.get(v1)!.params, name);
        assert.is(name !== v1, v !== 'v1' && rows <= (v === 'roll' || v === 'occ' ? 2 : 8) && a !== 'f32', `${v} ${rows} ${w} ${a}: ${name}`);
        assert.is(gemvBlockRows(name), name === v1 ? 4 : v === 'eight' ? 8 : v === 'mma' ? 16 : 4, name);
        if (v === 'mma' && name !== v1) assert.is(name, `gemv8m_${w}_${a}`, 'one mma entry for 1–8 rows');
      }
    }
  }
});

test('every decode attention variant has every lanes × dtype entry point, with the same parameters', () => {
  const kernels = loadKernelSources().kernels;
  for (const lanes of [1, 2, 4, 8, 16, 32]) {
    for (const act of ['f32', 'f16', 'bf16']) {
      for (const fp8 of [false, true]) {
        if (fp8 && act !== 'f32' && lanes > 16) continue; // 16 e4m3 a lane: heads of 256 need 16 lanes at most
        const v1 = kernels.get(decodeAttentionKernel(lanes, act, 'v1', fp8))!;
        for (const v of DECODE_ATTENTION_VARIANTS) {
          const name = decodeAttentionKernel(lanes, act, v, fp8);
          assert.equal(kernels.get(name)?.params, v1.params, name);
          // auto: the pipelined entry over a 16-bit cache, v1's over fp8 (decode-attention-variant.ts says why).
          assert.is(name.includes('p_'), act !== 'f32' && (v === 'pipe' || (v === 'auto' && !fp8)), name);
        }
        // The wide entries (16 elements a lane of an f16/bf16 cache), with the pipelined ones' parameters.
        if (act !== 'f32' && !fp8 && lanes <= 16) assert.equal(kernels.get(decodeAttentionKernel(lanes, act, 'pipe', false, true))?.params, v1.params);
      }
    }
  }
  assert.is(parseDecodeAttentionVariant('pipe'), 'pipe');
  assert.is(parseDecodeAttentionVariant(undefined), 'auto');
  assert.is(decodeAttentionKernel(8, 'f16', 'auto', true), 'attn_decode8_f16_e4m3');
  assert.is(decodeAttentionKernel(8, 'f16', 'auto', false), 'attn_decode8p_f16');
  assert.is(parseDecodeAttentionVariant('v1'), 'v1');
  assert.throws(() => parseDecodeAttentionVariant('fast'), (e: BackendError) => e instanceof BackendError && e.info.field === 'ZINFER_DECODE_ATTENTION');
});

test('narrow rows take the one-warp GEMV in 16-bit modes at 1–2 rows (ZINFER_GEMV_NARROW=warp, the default), else the block GEMV', () => {
  assert.is(parseGemvNarrow(undefined), 'warp');
  assert.equal(gemvLaunch(1, 'f16', 'f16', 768), { kernel: 'gemv1w_f16_f16', threads: 32 });
  assert.equal(gemvLaunch(2, 'bf16', 'bf16', 1024), { kernel: 'gemv2w_bf16_bf16', threads: 32 });
  assert.equal(gemvLaunch(1, 'f16', 'f16', 1032).threads, 128, 'wider rows');
  assert.equal(gemvLaunch(3, 'f16', 'f16', 768).threads, 128, 'more rows');
  assert.equal(gemvLaunch(1, 'f16', 'f32', 768).threads, 128, 'parity mode');
  setGemvNarrow('block');
  try {
    assert.equal(gemvLaunch(1, 'f16', 'f16', 768), { kernel: gemvKernel(1, 'f16', 'f16', autoGemvVariant('none', 1)), threads: 128 });
  } finally {
    setGemvNarrow('warp');
  }
  assert.throws(() => parseGemvNarrow('thread'), (e: BackendError) => e instanceof BackendError && e.info.field === 'ZINFER_GEMV_NARROW');
});

test('rows up to GEMV_WARP_MAX_IN inputs take the one-warp GEMV when its blocks fit in one wave of warps; the bound moves; a bad one is a BackendError', () => {
  const H200 = (blocks: number) => ({ blocks, multiprocessors: 132 });
  assert.is(GEMV_WARP_MAX_IN, 2560);
  assert.equal(gemvLaunch(1, 'f16', 'f16', 1280, 'residual', H200(1280)), { kernel: 'gemv1w_f16_f16', threads: 32 }, 'a 13B tp-4 rank\'s o');
  assert.equal(gemvLaunch(2, 'bf16', 'bf16', 2560, 'residual', H200(1280)), { kernel: 'gemv2w_bf16_bf16', threads: 32 }, 'a tp-2 rank\'s o');
  assert.is(gemvLaunch(1, 'f16', 'f16', 2560, 'residual', H200(14 * 132)).threads, 32, 'one full wave');
  assert.is(gemvLaunch(1, 'f16', 'f16', 2048, 'residual', H200(14 * 132 + 1)).threads, 128, 'two waves: a 70B tp-4 rank\'s o');
  assert.is(gemvLaunch(1, 'f16', 'f16', 4096, 'residual', H200(1024)).threads, 128, 'past the bound: the 7B o');
  assert.is(gemvLaunch(1, 'f16', 'f16', 1280, 'residual').threads, 128, 'no grid given: only rows up to GEMV_WARP_ALWAYS_IN');
  assert.is(gemvLaunch(1, 'f16', 'f32', 1280, 'residual', H200(64)).threads, 128, 'parity mode');
  setGemvWarpMaxIn(1024);
  try {
    assert.is(gemvLaunch(1, 'f16', 'f16', 1280, 'residual', H200(64)).threads, 128, 'bound lowered');
    assert.is(gemvLaunch(1, 'f16', 'f16', 768).threads, 32, 'GPT-2 rows stay narrow');
  } finally {
    setGemvWarpMaxIn(GEMV_WARP_MAX_IN);
  }
  for (const bad of [-1, 1.5, Number.NaN])
    assert.throws(() => setGemvWarpMaxIn(bad), (e: BackendError) => e instanceof BackendError && e.info.field === 'setGemvWarpMaxIn');
});

test('ZINFER_GEMV: unknown variants are a BackendError naming the field and the choices', () => {
  assert.is(parseGemvVariant(undefined), 'auto');
  assert.is(parseGemvVariant('occ'), 'occ');
  try {
    parseGemvVariant('fast');
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BackendError);
    assert.is((e as BackendError).info.field, 'ZINFER_GEMV');
    assert.is((e as BackendError).info.expected, 'v1 | roll | occ | dense | eight | mma | auto');
  }
});

test('ZINFER_GEMV_BY_EPILOGUE: each listed epilogue takes its variant, the rest the selected one; bad items name the field', () => {
  assert.equal(parseGemvByEpilogue('residual:occ, gated:v1'), { residual: 'occ', gated: 'v1' });
  assert.equal(parseGemvByEpilogue(undefined), {});
  setGemvVariantByEpilogue({ residual: 'occ' });
  try {
    assert.is(gemvLaunch(1, 'f16', 'f16', 4096, 'residual').kernel, 'gemv1o_f16_f16');
    assert.is(gemvLaunch(1, 'f16', 'f16', 4096, 'gated').kernel, 'gemv1d_f16_f16'); // auto: one round of 4 vectors
    assert.is(gemvLaunch(4, 'f16', 'f16', 4096, 'residual').kernel, 'gemv4_f16_f16', 'occ has no 4-row entry: v1');
  } finally {
    setGemvVariantByEpilogue({});
  }
  for (const bad of ['down:occ', 'residual:fast', 'residual', ':occ', 'residual:occ:v1', 'residual:occ,residual:v1']) {
    assert.throws(() => parseGemvByEpilogue(bad), (e: BackendError) => e instanceof BackendError && e.info.field === 'ZINFER_GEMV_BY_EPILOGUE', bad);
  }
});

test('auto: dense for rows of one full round (4 vectors a thread); occ for other residual GEMVs; eight for 5–7 vectors; v1 for wide gated rows; occ else; mma for 2–8 rows', () => {
  assert.is(gemvVariant(), 'auto');
  const kernel = (inF: number, e: 'none' | 'residual' | 'gated') => gemvLaunch(1, 'bf16', 'bf16', inF, e).kernel;
  assert.is(kernel(4096, 'residual'), 'gemv1d_bf16_bf16');
  assert.is(kernel(3456, 'residual'), 'gemv1d_bf16_bf16', 'a 13B tp-4 rank\'s down: 3.4 vectors a thread, one round');
  assert.is(kernel(11008, 'residual'), 'gemv1o_bf16_bf16');
  assert.is(kernel(4096, 'none'), 'gemv1d_bf16_bf16');
  assert.is(kernel(4096, 'gated'), 'gemv1d_bf16_bf16');
  assert.is(kernel(5120, 'none'), 'gemv1e_bf16_bf16', "a 13B's q|k|v: 5 vectors a thread");
  assert.is(kernel(5120, 'gated'), 'gemv1e_bf16_bf16');
  assert.is(kernel(5120, 'residual'), 'gemv1o_bf16_bf16');
  assert.is(kernel(7168, 'gated'), 'gemv1e_bf16_bf16');
  assert.is(gemvLaunch(1, 'bf16', 'bf16', 5120, 'gated', undefined, true).kernel, 'gemv1d_bf16_bf16', 'a LayerNorm fused: dense, the same sums');
  assert.is(kernel(8192, 'gated'), 'gemv1_bf16_bf16');
  assert.is(kernel(8192, 'none'), 'gemv1o_bf16_bf16');
  // Small batches: mma; where it does not fit, eight, but residual GEMVs take occ at 2 rows and dense at 3–4.
  assert.is(gemvLaunch(2, 'bf16', 'bf16', 4096, 'gated').kernel, 'gemv8m_bf16_bf16');
  assert.is(gemvLaunch(5, 'bf16', 'bf16', 8192, 'residual').kernel, 'gemv8m_bf16_bf16');
  assert.is(gemvLaunch(3, 'bf16', 'bf16', 4100, 'gated').kernel, 'gemv4e_bf16_bf16', 'rows not a multiple of 8 wide');
  assert.is(gemvLaunch(2, 'bf16', 'bf16', 11004, 'residual').kernel, 'gemv2o_bf16_bf16');
  assert.is(gemvLaunch(4, 'bf16', 'bf16', 8196, 'residual').kernel, 'gemv4d_bf16_bf16');
  assert.is(gemvLaunch(8, 'bf16', 'bf16', 4096, 'none', undefined, true).kernel, 'gemv8d_bf16_bf16', 'a LayerNorm: dense');
  assert.is(gemvLaunch(8, 'bf16', 'bf16', 4100, 'none').kernel, 'gemv8e_bf16_bf16');
  assert.is(gemvLaunch(4, 'f16', 'f32', 4096, 'residual').kernel, 'gemv4_f16_f32', 'v1 in parity mode');
  assert.is(gemvLaunch(1, 'f16', 'f32', 4096, 'residual').kernel, 'gemv1_f16_f32', 'nor in parity mode');
});

test('auto: eight for a residual GEMV whose 4-row blocks take over one wave and whose 8-row blocks fit in one; never with a LayerNorm', () => {
  const H200 = (blocks: number) => ({ blocks, multiprocessors: 132 }); // a wave: 4 blocks an SM, 528
  const kernel = (inF: number, blocks: number, e: 'none' | 'residual' | 'gated' = 'residual', layerNorm = false) => gemvLaunch(1, 'f16', 'f16', inF, e, H200(blocks), layerNorm).kernel;
  assert.is(kernel(4096, 1024), 'gemv1e_f16_f16', "the 7B's o: 512 blocks of 8 rows, one wave");
  assert.is(kernel(11008, 1024), 'gemv1e_f16_f16', "the 7B's down");
  assert.is(kernel(3456, 1280), 'gemv1d_f16_f16', "a 13B tp-4 rank's down: 640 blocks of 8 are over a wave");
  assert.is(kernel(4096, 528), 'gemv1d_f16_f16', 'one wave already');
  assert.is(kernel(4096, 1024, 'none'), 'gemv1d_f16_f16', 'residual GEMVs only');
  assert.is(kernel(4096, 1024, 'residual', true), 'gemv1d_f16_f16', 'a LayerNorm fused: dense, the same sums');
  assert.is(gemvLaunch(2, 'f16', 'f16', 4096, 'residual', H200(1024)).kernel, 'gemv8m_f16_f16', 'two rows: the small-batch rule');
  assert.is(gemvBlocks([4096], false, gemvBlockRows('gemv1e_f16_f16')), 512);
  assert.is(gemvBlocks([11008, 11008], true, 8), 2752, 'gated: 4 gate and 4 up rows a block');
  assert.is(gemvBlocks([4096, 1024, 1024], false, 4), 1536, 'segments: their blocks added');
});

test('eight: the residual GEMVs whose 8-row blocks fit in one wave (here: of a one-SM recording GPU) launch a block per 8 rows', async () => {
  class OneSmGpu extends RecordingGpu {
    override readonly multiprocessors = 1; // a wave of 4 blocks: the tiny model's 32-row o and down take 8 of 4 rows, 4 of 8
  }
  setGemvNarrow('block'); // the tiny model's rows are narrow: eight applies to the 128-thread GEMV
  try {
    const gpu = new OneSmGpu();
    const m = tinyLlama(Rng.fromSeed(7), TINY_LLAMA, 'f16');
    const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 8, blockSize: 4 } }, SETTINGS);
    const blocks = [0, 1];
    await program.run(stepBatch([{ tokens: [5, 6, 7], cached: 0, blocks }], 4, 'last'));
    const from = gpu.launches.length;
    await program.run(stepBatch([{ tokens: [9], cached: 3, blocks }], 4, 'last'));
    const gemvs = gpu.launches.slice(from).filter((l) => l.kernel.startsWith('gemv'));
    const eight = gemvs.filter((l) => l.kernel === 'gemv1e_f16_f16');
    assert.is(eight.length, 2 * TINY_LLAMA.numLayers, `o and down of every layer: ${gemvs.map((l) => l.kernel).join(' ')}`);
    assert.ok(eight.every((l) => l.grid.x === TINY_LLAMA.hiddenSize / 8), 'a block per 8 rows');
    const gated = gemvs.filter((l) => l.grid.x === TINY_LLAMA.intermediateSize / 2);
    assert.ok(gated.length === TINY_LLAMA.numLayers && gated.every((l) => l.kernel === 'gemv1o_f16_f16'), 'gate/up stays on occ: 2 gate and 2 up rows a block');
    await program.dispose();
  } finally {
    setGemvNarrow('warp');
  }
});

test('runObserved: one decode step runs eagerly with the hook seeing every launch while its bucket has a graph; resetGraphs recaptures with the selected GEMV variant', async () => {
  setGemvNarrow('block'); // the tiny model's rows are narrow: the variants apply to the 128-thread GEMV
  try {
    await runObservedCase();
  } finally {
    setGemvNarrow('warp');
  }
});

async function runObservedCase(): Promise<void> {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(5), TINY16, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 8, blockSize: 4 } }, SETTINGS);
  const blocks = [0, 1, 2];
  await program.run(stepBatch([{ tokens: [5, 6, 7], cached: 0, blocks }], 4, 'last'));
  const decode = (t: number) => stepBatch([{ tokens: [9 + t], cached: 3 + t, blocks }], 4, 'last');
  for (let t = 0; t < 3; t++) await program.run(decode(t));
  assert.is(program.stats.graphCaptures, 1);
  const seen: { kernel: string; grid: Dim3; after: boolean }[] = [];
  const hook: LaunchHook = {
    before: (kernel, grid) => void seen.push({ kernel, grid, after: false }),
    after: (kernel) => {
      const last = seen[seen.length - 1];
      assert.is(last.kernel, kernel);
      last.after = true;
    },
  };
  const from = gpu.launches.length;
  const replays = program.stats.graphReplays;
  assert.is(await program.runObserved(decode(3), () => hook), hook);
  const eager = gpu.launches.slice(from);
  assert.ok(eager.length > 5 && eager.every((l) => !l.replay), 'an eager step, not a replay');
  assert.is(program.stats.graphReplays, replays);
  assert.equal(seen.map((s) => s.kernel), eager.map((l) => l.kernel));
  assert.ok(seen.every((s) => s.after));
  // The hook is gone afterwards, and the graph replays again.
  const n = seen.length;
  await program.run(decode(4));
  assert.is(seen.length, n);
  assert.is(program.stats.graphReplays, replays + 1);
  // With sample rows, the sampling kernel is observed after the step's kernels.
  seen.length = 0;
  const row = { temperature: 0.7, topK: 5, topP: 0.9, minP: 0, repetitionPenalty: 1, uniform: 0.25, penalized: new Int32Array(0) };
  await program.runObserved(decode(5), () => hook, [row]);
  assert.is(seen.at(-1)!.kernel, 'sample_f32');
  assert.ok(seen.every((s) => s.after));
  // The sampling buffers it allocated are not in any graph: the decode graph still replays, no recapture.
  const captures = program.stats.graphCaptures;
  await program.runSample(decode(6), [row]);
  assert.equal([program.stats.graphCaptures, program.stats.graphReplays], [captures, replays + 2]);

  const before = gemvVariant();
  const attnBefore = decodeAttentionVariant();
  try {
    setDecodeAttentionVariant('pipe');
    program.resetGraphs();
    const start = gpu.launches.length;
    await program.run(decode(5));
    assert.ok(gpu.launches.slice(start).some((l) => /^attn_decode\d+p_f16$/.test(l.kernel)), 'the pipelined decode attention');
    setDecodeAttentionVariant(attnBefore);
    program.resetGraphs();
    for (const v of GEMV_KERNEL_VARIANTS) {
      setGemvVariant(v);
      program.resetGraphs();
      const start = gpu.launches.length;
      for (let t = 5; t < 8; t++) await program.run(decode(t));
      const gemvs = gpu.launches.slice(start).filter((l) => l.kernel.startsWith('gemv'));
      assert.ok(gemvs.length >= 4 && gemvs.every((l) => l.kernel.startsWith(gemvKernel(1, 'f16', 'f16', v).split('_')[0] + '_')), `${v}: ${gemvs.map((l) => l.kernel).join(' ')}`);
    }
    assert.is(program.stats.graphCaptures, 1 + GEMV_KERNEL_VARIANTS.length);
  } finally {
    setGemvVariant(before);
    setDecodeAttentionVariant(attnBefore);
  }
  await program.dispose();
  assert.is(gpu.live.size, 0);
}

test('runObserved needs a Gpu that takes hooks', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(6), TINY16, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 8, blockSize: 4 } }, SETTINGS);
  (gpu as { setLaunchHook?: unknown }).setLaunchHook = undefined;
  try {
    await program.runObserved(stepBatch([{ tokens: [1], cached: 0, blocks: [0] }], 4, 'last'), () => ({ before() {}, after() {} }));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, /cannot observe launches/);
  }
  await program.dispose();
});

test.run();
