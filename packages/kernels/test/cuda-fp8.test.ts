// The opt-in fp8 (e4m3) KV cache of the cuda backend, without a GPU: the codec of cuda/fp8.cuh compiled
// for the host (when a C++ compiler exists) against an independent reference (the nearest e4m3 value,
// ties to the even code, saturating at ±448); kvBytesPerBlock; and whole programs on the recording GPU
// (every launch checked against its kernel's signature): the cache allocated at one byte an element, the
// fp8 writers and readers launched, flash left out, and the default path unchanged. The accuracy against
// the reference backend needs the GPU: scripts/gpu-fp8-check.mjs.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, ConfigError, createEngine, Rng } from '@zinfer/core';
import { memoryWeights, stepBatch, tinyLlama, TINY_LLAMA, type TinyLlamaConfig } from '@zinfer/core/testing';
import { cudaBackend } from '../src/cuda.js';
import { compileProgram, parseKvCacheDtype, type CompileSettings } from '../src/cuda/compile.js';
import { kernelDir } from '../src/cuda/kernel-sources.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';
import { referenceBackend } from '../src/reference.js';

const TINY16: TinyLlamaConfig = { ...TINY_LLAMA, headDim: 16 };
const SETTINGS: CompileSettings = {
  activations: 'auto', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};

/** e4m3 code → value (NaN for 0x7f / 0xff). */
function decode(c: number): number {
  const e = (c >> 3) & 15;
  const m = c & 7;
  const s = c & 0x80 ? -1 : 1;
  if (e === 15 && m === 7) return NaN;
  return e === 0 ? (s * m) / 512 : s * (1 + m / 8) * 2 ** (e - 7);
}

/** value → e4m3 code by search: the nearest finite value, ties to the even code, ±448 beyond. */
function encode(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  if (Number.isNaN(x)) return 0x7f;
  const a = Math.abs(x);
  if (a >= 448) return sign | 0x7e;
  let best = 0;
  for (let c = 1; c < 0x7f; c++) {
    const d = Math.abs(decode(c) - a);
    const bd = Math.abs(decode(best) - a);
    if (d < bd || (d === bd && (c & 1) === 0)) best = c;
  }
  return sign | best;
}

const gxx = spawnSync('g++', ['--version'], { stdio: 'ignore' }).status === 0;

test('cuda/fp8.cuh codec (host build): every code decodes as the reference; encoding rounds to nearest even and saturates', () => {
  if (!gxx) return console.log('note: no g++ here, the host build of fp8.cuh is not checked');
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-fp8-'));
  // Inputs: every code's value, every midpoint between neighbours (the ties), and values past ±448.
  const inputs: number[] = [0, -0, 447, 448, 449, 464, 1e9, -1e9, Infinity, -Infinity, 1e-9, -1e-9, 2 ** -10, 3 * 2 ** -10];
  for (let c = 0; c < 0x7e; c++) inputs.push(decode(c), -decode(c), (decode(c) + decode(c + 1)) / 2, -(decode(c) + decode(c + 1)) / 2, decode(c) * 1.01);
  const f32 = Float32Array.from(inputs);
  const program = `#include <cstdio>
#include "fp8.cuh"
static const unsigned in[] = {${Array.from(new Uint32Array(f32.buffer)).join('u,')}u};
int main() {
  for (int c = 0; c < 256; c++) { unsigned b = fp8_f2u(e4m3_decode_bits((unsigned char)c)); printf("%u\\n", b); }
  for (unsigned i = 0; i < sizeof(in) / 4; i++) printf("%d\\n", e4m3_encode_bits(fp8_u2f(in[i])));
}`;
  writeFileSync(join(dir, 'main.cpp'), program);
  const exe = join(dir, 'codec');
  const build = spawnSync('g++', ['-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', '-I', kernelDir(), '-o', exe, join(dir, 'main.cpp')], { encoding: 'utf8' });
  assert.is(build.status, 0, build.stderr);
  const out = spawnSync(exe, { encoding: 'utf8' }).stdout.trim().split('\n').map(Number);
  const asF32 = (bits: number) => new Float32Array(Uint32Array.of(bits).buffer)[0];
  for (let c = 0; c < 256; c++) {
    const got = asF32(out[c]);
    const want = decode(c);
    assert.ok(Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want) || (got === 0 && want === 0), `code ${c}: ${got} vs ${want}`);
  }
  f32.forEach((x, i) => assert.is(out[256 + i], encode(x), `encode(${x})`));
});

test('kvCacheDtype fp8 halves kvBytesPerBlock of a 16-bit model; other values are a BackendError naming the option', () => {
  const m = tinyLlama(Rng.fromSeed(1), TINY16, 'f16');
  const weights = memoryWeights(m.tensors);
  const f16 = cudaBackend({ activations: 'f16' }).kvBytesPerBlock(m.graph, 16, weights);
  const fp8 = cudaBackend({ activations: 'f16', kvCacheDtype: 'fp8' }).kvBytesPerBlock(m.graph, 16, weights);
  assert.is(f16, 2 * TINY16.numLayers * 16 * TINY16.numKeyValueHeads * TINY16.headDim * 2);
  assert.is(fp8 * 2, f16);
  assert.is(cudaBackend({ kvCacheDtype: 'fp8', activations: 'f32' }).kvBytesPerBlock(m.graph, 16, weights), fp8);
  assert.is(parseKvCacheDtype(undefined), 'auto');
  assert.throws(() => cudaBackend({ kvCacheDtype: 'e5m2' as 'fp8' }), (e: BackendError) => e instanceof BackendError && e.info.field === 'kvCacheDtype');
});

test("the engine's limits.kvCacheDtype: fp8 reaches kvBytesPerBlock and compile's kvCache; a backend without it, or another value, is a ConfigError naming the field", async () => {
  const m = tinyLlama(Rng.fromSeed(3), TINY16, 'f16');
  const weights = memoryWeights(m.tensors);
  const be = cudaBackend({ activations: 'f16' });
  assert.equal(be.kvCacheDtypes, ['auto', 'fp8']);
  assert.is(be.kvBytesPerBlock(m.graph, 16, weights, 'fp8') * 2, be.kvBytesPerBlock(m.graph, 16, weights, 'auto'));
  // compile's kvCache.dtype alone (the backend option left at 'auto') makes the cache fp8.
  const gpu = new RecordingGpu();
  const sizes: number[] = [];
  const alloc = gpu.alloc.bind(gpu);
  gpu.alloc = (bytes: number, what: string) => (what.startsWith('KV cache') && sizes.push(bytes), alloc(bytes, what));
  const program = await compileProgram(gpu, m.graph, weights, { kvCache: { numBlocks: 3, blockSize: 4, dtype: 'fp8' } }, SETTINGS);
  await program.run(stepBatch([{ tokens: [1, 2], cached: 0, blocks: [0] }], 4, 'last'));
  assert.ok(gpu.launches.some((l) => l.kernel === 'rope_kv_f16_e4m3'));
  assert.equal(sizes, [2 * TINY16.numLayers * 4 * 4 * TINY16.numKeyValueHeads * TINY16.headDim]);
  await program.dispose();
  const model = join(import.meta.dirname, '../../../fixtures/models/llama3');
  for (const [limits, found] of [[{ kvCacheDtype: 'fp8' }, 'fp8'], [{ kvCacheDtype: 'fp16' }, 'fp16']] as const) {
    try {
      await createEngine({ model, backend: referenceBackend(), limits: limits as { kvCacheDtype: 'fp8' } });
      assert.unreachable();
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, 'limits.kvCacheDtype');
      assert.match(String((e as ConfigError).info.found), found);
    }
  }
});

for (const activations of ['auto', 'f32'] as const) {
  test(`fp8 KV cache (activations ${activations}): a one-byte cache, fp8 writers and readers for prompt and decode, graphs replay; the default launches none of them`, async () => {
    const run = async (kvCache: 'auto' | 'fp8') => {
      const gpu = new RecordingGpu();
      let kvBytes = 0;
      const alloc = gpu.alloc.bind(gpu);
      gpu.alloc = (bytes: number, what: string) => {
        if (what.startsWith('KV cache')) kvBytes = bytes;
        return alloc(bytes, what);
      };
      const m = tinyLlama(Rng.fromSeed(2), TINY16, 'f16');
      const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 6, blockSize: 4 } }, { ...SETTINGS, activations, kvCache });
      const blocks = [0, 1, 2, 3];
      await program.run(stepBatch([{ tokens: [5, 6, 7, 8, 9], cached: 0, blocks }], 4, 'last'));
      for (let t = 0; t < 4; t++) await program.run(stepBatch([{ tokens: [10 + t], cached: 5 + t, blocks }], 4, 'last'));
      const kernels = new Set(gpu.launches.map((l) => l.kernel));
      const stats = { ...program.stats };
      await program.dispose();
      assert.is(gpu.live.size, 0, 'nothing leaks');
      return { kernels, kvBytes, stats };
    };
    const plain = await run('auto');
    const fp8 = await run('fp8');
    const act = activations === 'f32' ? 'f32' : 'f16';
    const cacheBytes = (b: number) => 2 * TINY16.numLayers * 7 * 4 * TINY16.numKeyValueHeads * TINY16.headDim * b; // 6 blocks + the scratch block
    assert.is(plain.kvBytes, cacheBytes(act === 'f32' ? 4 : 2));
    assert.is(fp8.kvBytes, cacheBytes(1));
    const e4m3 = [...fp8.kernels].filter((k) => k.endsWith('_e4m3'));
    assert.ok(e4m3.includes(`rope_kv_${act}_e4m3`) && e4m3.includes(`attention_partial_${act}_e4m3`) && e4m3.some((k) => k.startsWith('attn_decode')), e4m3.join(' '));
    assert.not.ok([...fp8.kernels].some((k) => k.startsWith('flash_prefill') || /^(rope_kv|kv_write|attn_decode\d+[pw]?|attention_partial)_(f16|f32)$/.test(k)), 'every cache access is fp8');
    assert.not.ok([...plain.kernels].some((k) => k.endsWith('_e4m3')), 'the default path launches no fp8 kernel');
    assert.ok(fp8.stats.graphReplays >= 2 && fp8.stats.graphError === null, JSON.stringify(fp8.stats));
  });
}

test.run();
