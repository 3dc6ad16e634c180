// The driver-side plumbing of the CUDA backend (koffi prototypes, out-parameters, kernelParams packing,
// launches with attributes (programmatic dependent launch), stream capture into graphs and their replay,
// copies through pinned staging, status → error naming, out-of-memory, leak-free dispose) on a machine
// without a GPU: a fake libcuda.so.1, compiled here from the C below, keeps "device" memory in host memory
// and runs the `add_f32` kernel on the host, so a launch's arguments are checked end to end. The checks run
// in a child process (the driver is loaded once per process; other suites must not see the fake).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const FAKE_LIBCUDA = String.raw`
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef int CUresult;
static long live = 0;
static size_t free_bytes(void) { const char *f = getenv("FAKE_CUDA_FREE"); return f ? strtoull(f, 0, 10) : (size_t)64 << 30; }
CUresult cuInit(unsigned f) { (void)f; return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuGetErrorName(CUresult s, const char **n) { *n = s == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : s == 1 ? "CUDA_ERROR_INVALID_VALUE" : "CUDA_ERROR_UNKNOWN"; return 0; }
CUresult cuGetErrorString(CUresult s, const char **n) { (void)s; *n = "fake driver error"; return 0; }
CUresult cuDeviceGetCount(int *c) { *c = 1; return 0; }
CUresult cuDeviceGet(int *d, int o) { if (o != 0) return 101; *d = 0; return 0; }
CUresult cuDeviceGetName(char *n, int len, int d) { (void)d; strncpy(n, "Fake GPU", len); return 0; }
CUresult cuDeviceGetAttribute(int *v, int a, int d) { (void)d; *v = a == 75 ? 9 : a == 76 ? 0 : a == 16 ? 132 : a == 38 ? 50 << 20 : a == 115 ? 1 : 0; return 0; }
CUresult cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)80 << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)0x1000; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return 0; }
CUresult cuCtxSetCurrent(void *c) { return c == (void *)0x1000 ? 0 : 1; }
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = free_bytes(); *t = (size_t)80 << 30; return 0; }
CUresult cuDeviceGetDefaultMemPool(void **p, int d) { (void)d; *p = (void *)0x2000; return 0; }
CUresult cuMemPoolSetAttribute(void *p, int a, void *v) { return p == (void *)0x2000 && a == 4 && *(uint64_t *)v == UINT64_MAX ? 0 : 1; }
/* Zeroed: no kernel runs here, so ids read back from device memory (argmax, sampling) must not be heap garbage. */
CUresult cuMemAllocAsync(uint64_t *d, size_t n, void *s) { (void)s; if (n > free_bytes()) return 2; *d = (uint64_t)(uintptr_t)calloc(1, n); live++; return 0; }
CUresult cuMemFreeAsync(uint64_t d, void *s) { (void)s; if (!d) return 1; free((void *)(uintptr_t)d); live--; return 0; }
CUresult cuMemAllocHost_v2(void **p, size_t n) { *p = malloc(n); live++; return 0; }
CUresult cuMemFreeHost(void *p) { free(p); live--; return 0; }
CUresult cuMemcpyHtoDAsync_v2(uint64_t d, const void *s, size_t n, void *st) { (void)st; memcpy((void *)(uintptr_t)d, s, n); return 0; }
CUresult cuMemcpyDtoHAsync_v2(void *d, uint64_t s, size_t n, void *st) { (void)st; memcpy(d, (void *)(uintptr_t)s, n); return 0; }
CUresult cuMemcpyDtoDAsync_v2(uint64_t d, uint64_t s, size_t n, void *st) { (void)st; memcpy((void *)(uintptr_t)d, (void *)(uintptr_t)s, n); return 0; }
CUresult cuMemsetD32Async(uint64_t d, unsigned v, size_t n, void *st) { (void)st; uint32_t *p = (uint32_t *)(uintptr_t)d; for (size_t i = 0; i < n; i++) p[i] = v; return 0; }
CUresult cuStreamCreate(void **s, unsigned f) { *s = (void *)(uintptr_t)(0x3000 + f); return 0; }
CUresult cuStreamDestroy_v2(void *s) { (void)s; return 0; }
CUresult cuStreamSynchronize(void *s) { (void)s; return 0; }
CUresult cuEventCreate(void **e, unsigned f) { (void)f; *e = malloc(1); return 0; }
CUresult cuEventDestroy_v2(void *e) { free(e); return 0; }
CUresult cuEventRecord(void *e, void *s) { (void)e; (void)s; return 0; }
CUresult cuEventSynchronize(void *e) { (void)e; return 0; }
CUresult cuEventElapsedTime_v2(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 1.0f; return 0; }
CUresult cuModuleLoadData(void **m, const void *img) { const unsigned char *b = img; if (b[0] != 0x7f || b[1] != 'E') return 200; *m = (void *)0x4000; return 0; }
CUresult cuModuleUnload(void *m) { (void)m; return 0; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) { (void)m; *f = strdup(name); return 0; }
CUresult cuFuncGetAttribute(int *v, int a, void *f) { (void)a; (void)f; *v = 0; return 0; }
CUresult cuFuncSetAttribute(void *f, int a, int v) { (void)f; (void)a; (void)v; return 0; }
/* Runs the add_f32 kernel (y = a + b over n) on the host; other kernels only count. While the stream
   captures, launches are counted into the graph instead of run. */
static long launches = 0, captured = 0, capturing = 0, graphs = 0, graph_launches = 0, graph_live = 0, ex_launches = 0;
static void run_add(void *f, void **p) {
  if (strcmp((const char *)f, "add_f32") == 0) {
    float *y = *(float **)p[0], *a = *(float **)p[1], *b = *(float **)p[2];
    int n = *(int *)p[3];
    for (int i = 0; i < n; i++) y[i] = a[i] + b[i];
  }
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh, void *s, void **p, void **extra) {
  (void)gy; (void)gz; (void)by; (void)bz; (void)sh; (void)s;
  if (!f || !p || extra || gx == 0 || bx == 0 || bx > 1024) return 1;
  if (capturing) { captured++; return 0; }
  launches++;
  run_add(f, p);
  return 0;
}
/* CUlaunchConfig: 7 u32 (grid, block, shared), CUstream at 32, attrs at 40, numAttrs at 48; an attribute:
   u32 id, pad, then the value union (programmatic stream serialization: an int). */
typedef struct { unsigned gx, gy, gz, bx, by, bz, sh; void *stream; unsigned char *attrs; unsigned nattrs; } Config;
CUresult cuLaunchKernelEx(const Config *c, void *f, void **p, void **extra) {
  if (!c || !f || !p || extra || c->gx == 0 || c->bx == 0 || c->bx > 1024) return 1;
  if (c->stream != (void *)(uintptr_t)0x3001 || c->nattrs != 1 || !c->attrs) return 1;
  if (*(unsigned *)c->attrs != 6 || *(int *)(c->attrs + 8) != 1) return 1;
  ex_launches++;
  if (capturing) { captured++; return 0; }
  launches++;
  run_add(f, p);
  return 0;
}
CUresult cuStreamBeginCapture_v2(void *s, int m) { (void)s; if (capturing || m != 2) return 1; capturing = 1; captured = 0; return 0; }
CUresult cuStreamEndCapture(void *s, void **g) { (void)s; if (!capturing) return 1; capturing = 0; *g = malloc(8); *(long *)*g = captured; return 0; }
CUresult cuGraphInstantiateWithFlags(void **e, void *g, unsigned long long f) { (void)f; *e = malloc(8); *(long *)*e = *(long *)g; graphs++; graph_live++; return 0; }
CUresult cuGraphLaunch(void *e, void *s) { (void)s; if (!e) return 1; graph_launches++; launches += *(long *)e; return 0; }
CUresult cuGraphExecDestroy(void *e) { free(e); graph_live--; return 0; }
CUresult cuGraphDestroy(void *g) { free(g); return 0; }
long fake_graphs(void) { return graphs; }
long fake_graph_launches(void) { return graph_launches; }
long fake_graph_live(void) { return graph_live; }
long fake_ex_launches(void) { return ex_launches; }
long fake_live(void) { return live; }
long fake_launches(void) { return launches; }
`;

const CHILD = process.env.ZINFER_FAKE_DRIVER_CHILD === '1';

if (!CHILD) {
  test('the driver plumbing works end to end against a fake libcuda (child process)', () => {
    const cc = spawnSync('cc', ['--version'], { stdio: 'ignore' });
    if (cc.status !== 0) {
      console.log('note: no C compiler, fake-driver test skipped');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'zinfer-fake-cuda-'));
    writeFileSync(join(dir, 'fake.c'), FAKE_LIBCUDA);
    const build = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-Wall', '-Werror', '-o', join(dir, 'libcuda.so.1'), join(dir, 'fake.c')], { encoding: 'utf8' });
    assert.is(build.status, 0, `cc failed:\n${build.stderr}`);
    const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      encoding: 'utf8',
      env: { ...process.env, ZINFER_FAKE_DRIVER_CHILD: '1', ZINFER_CUDA_LIB_DIR: dir, ZINFER_CUDA_CACHE_DIR: join(dir, 'cache'), FORCE_COLOR: '0' },
    });
    assert.is(child.status, 0, `fake-driver checks failed:\n${child.stdout}\n${child.stderr}`);
    assert.match(child.stdout, /Passed:\s+\d+/);
  });
  test.run();
} else {
  await childChecks();
}

async function childChecks(): Promise<void> {
  const koffi = (await import('koffi')).default;
  const { Rng, createEngine } = await import('@zinfer/core');
  const { memoryWeights, stepBatch, tinyLlama } = await import('@zinfer/core/testing');
  const { CudaDevice } = await import('../src/cuda/device.js');
  const { CudaStream } = await import('../src/cuda/stream.js');
  const { compileProgram } = await import('../src/cuda/compile.js');
  const { cudaBackend } = await import('../src/cuda.js');
  const { findLibrary } = await import('../src/cuda/libraries.js');
  const fake = koffi.load(findLibrary('cuda'));
  const live: () => number = fake.func('long fake_live(void)');
  const launches: () => number = fake.func('long fake_launches(void)');
  const graphs: () => number = fake.func('long fake_graphs(void)');
  const graphLaunches: () => number = fake.func('long fake_graph_launches(void)');
  const graphLive: () => number = fake.func('long fake_graph_live(void)');
  const exLaunches: () => number = fake.func('long fake_ex_launches(void)');
  let nvrtc = true;
  try {
    findLibrary('nvrtc');
  } catch {
    nvrtc = false;
  }
  const options = {
    activations: 'auto' as const, cublas: false, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
  };

  test('probe() reports the device; CudaDevice reads its properties through the prototypes', async () => {
    const info = await cudaBackend().probe();
    assert.equal(info, { device: 'cuda:0', description: 'Fake GPU (sm_90, 132 SMs)', memoryBytes: 64 * 2 ** 30 });
    const d = CudaDevice.open(0);
    assert.equal(d.props, { ordinal: 0, name: 'Fake GPU', arch: 90, multiprocessors: 132, l2Bytes: 50 << 20, totalBytes: 80 * 2 ** 30 });
  });

  test('upload and download round-trip through device memory and pinned staging', () => {
    const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null });
    const src = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5 - 3);
    const ptr = gpu.alloc(src.byteLength, 'round trip');
    gpu.upload(ptr, src.subarray(0)); // a view, as weights often are
    const back = new Float32Array(1000);
    gpu.download(back, ptr);
    assert.equal([...back], [...src]);
    gpu.fill32(ptr, 0x7fc00000, 10);
    gpu.download(back, ptr);
    assert.ok(Number.isNaN(back[9]) && back[10] === src[10]);
    gpu.free(ptr);
    gpu.dispose();
  });

  test('a launch packs pointers and ints as kernelParams: the add kernel (run by the fake) gets them right', () => {
    if (!nvrtc) return; // kernels load through NVRTC
    const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null });
    const [a, b] = [Float32Array.from({ length: 37 }, (_, i) => i), Float32Array.from({ length: 37 }, (_, i) => 100 * i)];
    const [pa, pb, py] = [gpu.alloc(a.byteLength, 'a'), gpu.alloc(b.byteLength, 'b'), gpu.alloc(a.byteLength, 'y')];
    gpu.upload(pa, a);
    gpu.upload(pb, b);
    gpu.launch('add_f32', { x: 1 }, 256, [py, pa, pb, 37]);
    const y = new Float32Array(37);
    gpu.download(y, py);
    assert.equal([...y], [...a].map((v, i) => v + b[i]));
    assert.throws(() => gpu.launch('add_f32', { x: 1 }, 256, [py, pa, pb]), /3 arguments for 4 parameters/);
    for (const p of [pa, pb, py]) gpu.free(p);
    gpu.dispose();
  });

  test('programmatic dependent launch: cuLaunchKernelEx gets the grid, the stream and the attribute, and runs the kernel', () => {
    if (!nvrtc) return;
    const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null, pdl: true });
    assert.ok(gpu.pdl);
    const a = Float32Array.from({ length: 300 }, (_, i) => i / 4);
    const [pa, py] = [gpu.alloc(a.byteLength, 'a'), gpu.alloc(a.byteLength, 'y')];
    gpu.upload(pa, a);
    const before = exLaunches();
    gpu.launch('add_f32', { x: 2 }, 256, [py, pa, pa, 300]);
    gpu.launch('add_f32', { x: 3, y: 1, z: 1 }, 128, [py, py, pa, 300]);
    assert.is(exLaunches() - before, 2);
    const y = new Float32Array(300);
    gpu.download(y, py);
    assert.equal([...y], [...a].map((v) => 3 * v));
    for (const p of [pa, py]) gpu.free(p);
    gpu.dispose();
  });

  test('stream capture: launches go into a graph, which instantiates, replays and is destroyed', () => {
    if (!nvrtc) return;
    const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null });
    const p = gpu.alloc(64, 'x');
    const [g0, l0] = [graphs(), graphLaunches()];
    gpu.beginCapture();
    gpu.launch('add_f32', { x: 1 }, 32, [p, p, p, 4]);
    gpu.launch('add_f32', { x: 1 }, 32, [p, p, p, 4]);
    const exec = gpu.endCapture();
    assert.is(graphs() - g0, 1);
    const n0 = launches();
    gpu.launchGraph(exec);
    gpu.launchGraph(exec);
    assert.is(graphLaunches() - l0, 2);
    assert.is(launches() - n0, 4, 'each replay runs the two captured launches');
    gpu.destroyGraph(exec);
    assert.is(graphLive(), 0);
    assert.throws(() => gpu.endCapture(), /cuStreamEndCapture failed/);
    gpu.free(p);
    gpu.dispose();
  });

  test('a failing call is a BackendError naming the call and the status', () => {
    const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null });
    assert.throws(() => gpu.free(0n), /cuMemFreeAsync failed with CUDA_ERROR_INVALID_VALUE/);
    gpu.dispose();
  });

  test('tiny Llama compiles, runs prefill and decode through every FFI path, and dispose frees everything', async () => {
    if (!nvrtc) return;
    const before = live();
    const m = tinyLlama(Rng.fromSeed(5), undefined, 'bf16');
    const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null });
    const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 4, blockSize: 4 } }, options);
    const n0 = launches();
    const out = await program.run(stepBatch([{ tokens: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], cached: 0, blocks: [0, 1, 2] }], 4, 'last'));
    assert.is(out.length, 61);
    assert.ok(out.every(Number.isNaN), 'the fake runs no model kernel: the poisoned output comes back');
    assert.ok(launches() - n0 > 20);
    const g0 = graphLaunches();
    for (let t = 0; t < 3; t++) await program.run(stepBatch([{ tokens: [3 + t], cached: 11 + t, blocks: [0, 1, 2, 3] }], 4, 'last'));
    assert.is(graphLaunches() - g0, 2, 'the second and third decode steps run as one graph launch each');
    assert.equal({ ...program.stats, steps: 0 }, { steps: 0, eagerSteps: 2, graphReplays: 2, graphCaptures: 1, graphError: null });
    await program.dispose();
    assert.is(graphLive(), 0, 'graphs destroyed');
    assert.is(live(), before, 'every allocation freed');
  });

  test('out of memory at compile: a BackendError naming bytes asked and free; nothing leaks', async () => {
    if (!nvrtc) return;
    const before = live();
    process.env.FAKE_CUDA_FREE = String(1 << 20);
    try {
      const m = tinyLlama(Rng.fromSeed(6));
      const gpu = new CudaStream(CudaDevice.open(0), { cacheDir: null });
      await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 10_000, blockSize: 16 } }, options).then(
        () => assert.unreachable('compile should fail'),
        (e: Error & { code?: string }) => {
          assert.is(e.code, 'E_BACKEND');
          assert.match(e.message, /KV cache: 10000 blocks of 16 tokens need 39\.1 MiB, 1\.0 MiB free on Fake GPU/);
        },
      );
      assert.is(live(), before);
    } finally {
      delete process.env.FAKE_CUDA_FREE;
    }
  });

  // Sampled, not greedy: greedy steps take ids from runArgmax, whose kernel the fake driver does not run.
  test('createEngine on the cuda backend loads a fixture model and generates (values are the fake\'s)', async () => {
    if (!nvrtc) return;
    const engine = await createEngine({ model: join(import.meta.dirname, '../../../fixtures/models/qwen2'), backend: cudaBackend({ cacheDir: null }) });
    const r = await engine.generate({ inputIds: [1, 2, 3], maxTokens: 2, temperature: 1, seed: 1, ignoreEos: true }).result;
    assert.is(r.tokens.length, 2);
    await engine.close();
  });

  test.run();
}
