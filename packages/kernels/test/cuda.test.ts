// The CUDA backend's toolchain and the GPU itself. Everywhere: every .cu compiles with nvcc for sm_90 (when
// nvcc exists) and through NVRTC via koffi (when a libnvrtc exists), every FFI prototype parses, library
// discovery never returns a stub and explains itself, probe() resolves. Only where probe() finds a GPU: the
// conformance suite against the reference and parity with transformers on every fixture model.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, SafetensorsFile } from '@zinfer/core';
import { kernelBackendConformance } from '@zinfer/core/testing';
import { cudaBackend } from '../src/cuda.js';
import { CUBLAS_PROTOTYPES } from '../src/cuda/cublas.js';
import { DRIVER_PROTOTYPES, OPTIONAL_DRIVER_PROTOTYPES } from '../src/cuda/driver-api.js';
import { compileUnits } from '../src/cuda/kernel-cache.js';
import { expandMacros, kernelDir, loadKernelSources, parseKernelSignatures } from '../src/cuda/kernel-sources.js';
import { findIncludeDir, findLibrary, searchDirs } from '../src/cuda/libraries.js';
import { EPI, gemvArgs } from '../src/cuda/linear-launch.js';
import { Nvrtc, NVRTC_PROTOTYPES } from '../src/cuda/nvrtc.js';
import { referenceBackend } from '../src/reference.js';

const sources = loadKernelSources();
const hasNvcc = spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status === 0;
let nvrtc: Nvrtc | null = null;
try {
  nvrtc = Nvrtc.open();
} catch (e) {
  console.log(`note: no libnvrtc here, NVRTC compile tests skipped (${(e as Error).message.slice(0, 120)}...)`);
}
if (!hasNvcc) console.log('note: nvcc not found, nvcc compile tests skipped');

// ---------------------------------------------------------------------------------------------------
// Kernels compile

for (const file of sources.units.keys()) {
  test(`nvcc -arch=sm_90 -cubin ${file}: no warnings, no spills`, () => {
    if (!hasNvcc) return;
    const out = join(mkdtempSync(join(tmpdir(), 'zinfer-nvcc-')), 'k.cubin');
    const r = spawnSync('nvcc', ['-arch=sm_90', '-cubin', '-std=c++17', '-Werror', 'all-warnings', '-Xptxas', '-v', '-I', kernelDir(), '-o', out, join(kernelDir(), file)], { encoding: 'utf8' });
    assert.is(r.status, 0, `nvcc failed on ${file}:\n${r.stderr}`);
    assert.ok(statSync(out).size > 0);
    const spills = /(\d+) bytes spill stores/g;
    for (let m = spills.exec(r.stderr); m; m = spills.exec(r.stderr)) assert.is(m[1], '0', `${file} spills registers:\n${r.stderr}`);
  });
}

test('every parsed entry point is in its nvcc CUBIN (macro-made ones too), and no kernel uses local memory for arrays', () => {
  if (!hasNvcc) return;
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-nvcc-names-'));
  for (const file of sources.units.keys()) {
    const out = join(dir, `${file}.cubin`);
    const r = spawnSync('nvcc', ['-arch=sm_90', '-cubin', '-std=c++17', '-Xptxas', '-v', '-I', kernelDir(), '-o', out, join(kernelDir(), file)], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const symbols = new Set(readFileSync(out).toString('latin1').split('\0'));
    for (const k of sources.kernels.values()) if (k.file === file) assert.ok(symbols.has(k.name), `${k.name} missing from ${file}'s CUBIN`);
    // ptxas reports "N bytes stack frame" per entry; only the double-precision sincos of rotary.cu may use one.
    const stacks = [...r.stderr.matchAll(/Compiling entry function '(\w+)'[\s\S]*?(\d+) bytes stack frame/g)];
    for (const [, name, bytes] of stacks) if (!/^(rotary|rope_kv)_/.test(name)) assert.is(bytes, '0', `${name} has a ${bytes}-byte stack frame (a register array indexed at run time?)`);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('every kernel source compiles through NVRTC (koffi) to an sm_90 CUBIN, and the cache returns it', () => {
  if (!nvrtc) return;
  const archs = nvrtc.supportedArchs();
  const arch = archs.includes(90) ? 90 : archs[archs.length - 1];
  const cache = mkdtempSync(join(tmpdir(), 'zinfer-cubins-'));
  const first = compileUnits(nvrtc, sources, arch, findIncludeDir(nvrtc.path), cache);
  assert.equal(first.compiled.sort(), [...sources.units.keys()].sort());
  for (const [file, cubin] of first.cubins) assert.equal([...cubin.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${file}: not an ELF CUBIN`);
  const second = compileUnits(nvrtc, sources, arch, null, cache); // different options (no -I): recompiles
  const third = compileUnits(nvrtc, sources, arch, findIncludeDir(nvrtc.path), cache);
  assert.is(second.compiled.length, sources.units.size);
  assert.is(third.compiled.length, 0, 'same source and options: every CUBIN from the cache');
  assert.is(readdirSync(cache).filter((f) => f.startsWith(`sm_${arch}-`)).length, 2 * sources.units.size);
  rmSync(cache, { recursive: true, force: true });
});

test('an NVRTC compile error is a BackendError carrying the compiler log and the file name', () => {
  if (!nvrtc) return;
  try {
    nvrtc.compile({ name: 'broken.cu', source: 'extern "C" __global__ void k(float *y) { y[0] = undefined_name; }', headers: new Map(), options: ['--gpu-architecture=sm_80'] });
    assert.unreachable('should have thrown');
  } catch (e) {
    const err = e as { code?: string; message: string };
    assert.is(err.code, 'E_BACKEND');
    assert.match(err.message, 'broken.cu');
    assert.match(err.message, 'undefined_name');
  }
});

test('kernel signatures: every extern "C" kernel parses (macro-made entry points included), with unique names and only ptr/int/float parameters', () => {
  const acts = ['f32', 'f16', 'bf16'];
  const weighted = ['f32_f32', 'f16_f32', 'bf16_f32', 'f16_f16', 'bf16_bf16'];
  const want = [
    ...acts.flatMap((a) => ['rms_norm', 'layer_norm', 'add', 'activation', 'bias_add', 'gather_rows', 'to_f32', 'rotary', 'rope_kv', 'kv_write', 'attention_partial', 'attention_reduce', 'interleave_ranks', 'copy'].map((k) => `${k}_${a}`)),
    ...acts.flatMap((a) => [1, 2, 4, 8, 16, 32].map((l) => `attn_decode${l}_${a}`)),
    ...weighted.flatMap((w) => ['embedding', 'embedding_sum', 'gemm', 'gemv1', 'gemv2', 'gemv4', 'gemv8'].map((k) => `${k}_${w}`)),
    ...['f16', 'bf16'].flatMap((a) => [16, 32, 64, 80, 96, 128].map((d) => `flash_prefill${d}_${a}`)),
    ...weighted.flatMap((w) => ['moe_router', 'moe_router_split', 'moe_gate_up1', 'moe_gate_up2', 'moe_gate_up4', 'moe_gate_up8', 'moe_down1', 'moe_down2', 'moe_down4', 'moe_down8', 'moe_down_tiles'].map((k) => `${k}_${w}`)),
    ...acts.flatMap((a) => ['moe_combine', 'sigmoid_gate', 'moe_dense_act'].map((k) => `${k}_${a}`)),
    ...['f16_f16', 'bf16_bf16'].flatMap((w) => ['moe_gate_up_m', 'moe_down_m'].map((k) => `${k}_${w}`)), // small steps on the tensor cores
    'moe_permute',
    'argmax_f32', 'sample_f32', 'read_bandwidth',
    // The opt-in fp8 KV cache's writers and readers; the decode variants (pipelined attention, GEMV roll/occ/dense/eight).
    ...acts.flatMap((a) => ['rope_kv', 'kv_write', 'attention_partial'].map((k) => `${k}_${a}_e4m3`)),
    ...[1, 2, 4, 8, 16, 32].map((l) => `attn_decode${l}_f32_e4m3`),
    ...['f16', 'bf16'].flatMap((a) => [1, 2, 4, 8, 16, 32].map((l) => `attn_decode${l}p_${a}`)),
    // 16 cached elements a lane (fp8 caches in the 16-bit modes, the wide f16/bf16 kernel): up to 16 lanes.
    ...['f16', 'bf16'].flatMap((a) => [1, 2, 4, 8, 16].flatMap((l) => [`attn_decode${l}_${a}_e4m3`, `attn_decode${l}p_${a}_e4m3`, `attn_decode${l}w_${a}`])),
    ...['f16_f16', 'bf16_bf16'].flatMap((w) => ['gemv1r', 'gemv1o', 'gemv1d', 'gemv1e', 'gemv2r', 'gemv2o', 'gemv1w', 'gemv2w', 'gemv2d', 'gemv2e', 'gemv4d', 'gemv4e', 'gemv8d', 'gemv8e', 'gemv8m'].map((k) => `${k}_${w}`)),
    // The one-shot, two-shot and Lamport all-reduce over peer memory (tensor-parallel ranks with NVLink).
    ...acts.flatMap((a) => [`peer_all_reduce_${a}`, `peer_all_reduce_2s_${a}`, `peer_all_reduce_ll_${a}`]),
  ];
  for (const name of want) assert.ok(sources.kernels.has(name), `missing kernel ${name}`);
  assert.is(sources.kernels.size, want.length, `unexpected kernels: ${[...sources.kernels.keys()].filter((k) => !want.includes(k)).join(', ')}`);
  assert.equal(sources.kernels.get('gemv1_f16_f16')!.params.map((p) => p.kind), [
    ...Array(3).fill(['ptr', 'ptr', 'ptr', 'i32']).flat(), 'ptr', 'ptr', 'ptr', 'ptr', 'f32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'ptr', 'i32', 'i32',
    'ptr', 'i32', 'i32', 'i32', 'i32', // the push into the peer all-reduce (EPI_PUSH)
  ]);
  // Every GEMV launch (the engine's, the microbench's) builds its arguments with gemvArgs: one per parameter.
  for (const kernel of ['gemv1_f16_f16', 'gemv8_f16_f32', 'gemv1w_bf16_bf16']) {
    const params = sources.kernels.get(kernel)!.params;
    const args = gemvArgs({ segs: [[1n, 2n, 0n, 4]], x: 3n, rows: 1, inF: 8, epi: EPI.none });
    assert.is(args.length, params.length, kernel);
    args.forEach((a, i) => assert.is(typeof a === 'bigint', params[i].kind === 'ptr', `${kernel} argument ${i} (${params[i].name})`));
  }
  assert.equal(sources.kernels.get('rms_norm_bf16')!.params.map((p) => p.kind), ['ptr', 'ptr', 'ptr', 'i32', 'f32']);
});

test('macro expansion: parameters substituted, ## pasted, nested calls expanded, directives dropped', () => {
  const src = `#define INNER(T) T *p, int n\n#define ENTRY(S, T) \\\n  extern "C" __global__ void k_##S(INNER(T), float a) { }\n#if 0\n#endif\nENTRY(f16, f16_t)\nENTRY(f32, float)\n`;
  assert.equal(parseKernelSignatures(src, 'x.cu').map((k) => `${k.name}(${k.params.map((p) => p.kind).join(',')})`), ['k_f16(ptr,i32,f32)', 'k_f32(ptr,i32,f32)']);
  assert.match(expandMacros('#define A(x) x + 1\nA(A(2))', 'y.cu'), '2 + 1 + 1');
});

// ---------------------------------------------------------------------------------------------------
// FFI declarations

test('every driver, NVRTC and cuBLAS prototype parses in koffi', () => {
  const all = { ...DRIVER_PROTOTYPES, ...OPTIONAL_DRIVER_PROTOTYPES, ...NVRTC_PROTOTYPES, ...CUBLAS_PROTOTYPES };
  for (const [name, proto] of Object.entries(all)) {
    const t = koffi.proto(proto);
    assert.is(t.proto?.name ?? t.name, name, `prototype of ${name} declares ${t.name}`);
  }
});

// ---------------------------------------------------------------------------------------------------
// Library discovery

function tempTree(): string {
  const root = mkdtempSync(join(tmpdir(), 'zinfer-libs-'));
  mkdirSync(join(root, 'stubs'));
  mkdirSync(join(root, 'lib'));
  mkdirSync(join(root, 'empty'));
  writeFileSync(join(root, 'stubs', 'libcuda.so.1'), 'stub');
  symlinkSync(join(root, 'stubs', 'libcuda.so.1'), join(root, 'lib', 'libcuda.so.1')); // a link into stubs/
  writeFileSync(join(root, 'lib', 'libnvrtc.so.12'), 'not really');
  return root;
}

test('library discovery never returns a stub, even through a symlink or LD_LIBRARY_PATH', () => {
  const root = tempTree();
  const env = { ZINFER_CUDA_LIB_DIR: `${join(root, 'stubs')}:${join(root, 'lib')}`, LD_LIBRARY_PATH: join(root, 'stubs') };
  assert.not.ok(searchDirs({ env, system: false }).some((d) => d.includes('/stubs')));
  assert.throws(() => findLibrary('cuda', { env, system: false }), /cannot find the CUDA library libcuda\.so\.1/);
  assert.is(findLibrary('nvrtc', { env, system: false }), join(root, 'lib', 'libnvrtc.so.12'));
  for (const d of searchDirs()) assert.not.ok(/(^|\/)stubs(\/|$)/.test(d), `system search includes ${d}`);
  rmSync(root, { recursive: true, force: true });
});

test('nothing found: a BackendError naming the library, every path tried and ZINFER_CUDA_LIB_DIR', () => {
  const root = tempTree();
  try {
    findLibrary('cublas', { env: { ZINFER_CUDA_LIB_DIR: join(root, 'empty') }, system: false });
    assert.unreachable('should have thrown');
  } catch (e) {
    const err = e as { code?: string; message: string };
    assert.is(err.code, 'E_BACKEND');
    assert.match(err.message, 'libcublas.so.13');
    assert.match(err.message, 'ZINFER_CUDA_LIB_DIR');
    assert.match(err.message, join(root, 'empty', 'libcublas.so.12'));
  }
  rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// probe, and the GPU-only suites

const backend = cudaBackend({ activations: 'f32', poison: true, cacheDir: join(tmpdir(), 'zinfer-cuda-test-cache') });
const device = await backend.probe();
console.log(device ? `cuda device: ${device.description}` : 'note: probe() found no CUDA device here; GPU suites skipped');

test('probe() resolves to null or a DeviceInfo without throwing', async () => {
  const info = await cudaBackend({ device: 0 }).probe();
  if (info === null) {
    let hasDriver = true;
    try {
      findLibrary('cuda');
    } catch {
      hasDriver = false;
    }
    if (!hasDriver) return; // the expected answer on a machine without the driver
    console.log('note: a libcuda exists but probe() returned null (no usable device)');
    return;
  }
  assert.match(info.device, /^cuda:\d+$/);
  assert.ok(info.memoryBytes > 0);
});

if (device) {
  for (const c of kernelBackendConformance(backend, { oracle: referenceBackend() })) test(c.name, c.run);
  // The 16-bit modes against the f32 reference: rounding to f16/bf16 at every op, at 1e-2 of the scale.
  for (const activations of ['f16', 'bf16'] as const) {
    const half = cudaBackend({ activations, poison: true, cacheDir: join(tmpdir(), 'zinfer-cuda-test-cache') });
    for (const c of kernelBackendConformance(half, { oracle: referenceBackend(), tolerance: 1e-2 })) test(`${activations}: ${c.name}`, c.run);
  }

  const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
  for (const arch of readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory())) {
    test(`cuda ${arch}: prompt logits (max abs ≤ 1e-3) and greedy continuation match transformers`, async () => {
      const expected = JSON.parse(readFileSync(join(FIXTURES, arch, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_tokens: number[] };
      const f = SafetensorsFile.open(join(FIXTURES, arch, 'expected-logits.safetensors'));
      const logits = f.read('logits');
      f.close();
      const vocab = logits.shape[1];
      const engine = await createEngine({ model: join(FIXTURES, arch), backend });
      try {
        const r = await engine.generate({ inputIds: expected.input_ids, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
        let maxErr = 0;
        r.promptLogits!.forEach((row, p) => {
          for (let i = 0; i < vocab; i++) maxErr = Math.max(maxErr, Math.abs(row[i] - (logits.data as Float32Array)[p * vocab + i]));
        });
        assert.ok(maxErr <= 1e-3, `${arch}: max abs logit error ${maxErr}`);
        assert.equal(r.tokens, expected.greedy_tokens, `${arch}: greedy continuation`);
      } finally {
        await engine.close();
      }
    });
  }
}

test.run();
