// The graph timeline's host side (kernel-trace.ts): records decoded from the device words, split into
// steps by release order and attributed to kernels; trace builds compile with their own option (their own
// cache entries). No GPU needed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, ConfigError } from '@zinfer/core';
import { decodeRecords, summarizeTrace, traceBuild, type TraceRecord } from '../src/cuda/kernel-trace.js';
import { buildDefines, cubinKey, nvrtcOptions } from '../src/cuda/kernel-cache.js';

const rec = (reachedNs: number, releasedNs: number, gx = 1): TraceRecord => ({ reachedNs, releasedNs, grid: [gx, 1, 1], block: 128 });

test('decodeRecords reads reached, released, grid and block from the words', () => {
  const words = new BigUint64Array([100n, 250n, 3072n | (2n << 32n), 1n | (128n << 32n), 300n, 310n, 64n | (1n << 32n), 1n | (256n << 32n)]);
  assert.equal(decodeRecords(words), [
    { reachedNs: 100, releasedNs: 250, grid: [3072, 2, 1], block: 128 },
    { reachedNs: 300, releasedNs: 310, grid: [64, 1, 1], block: 256 },
  ]);
});

test('summarizeTrace: release to next release per kernel, named from the launches, steps in release order', () => {
  // Two steps of three kernels, appended out of order (records from several modules interleave).
  const step = (t: number) => [rec(t, t + 1000, 10), rec(t + 500, t + 4000, 20), rec(t + 3000, t + 4500, 30)];
  const records = [...step(10_000), ...step(0)].reverse();
  const s = summarizeTrace(records, 2, ['qkv', 'attention', 'o']);
  assert.is(s.kernelsPerStep, 3);
  assert.is(s.stepUs, 3.5);
  assert.equal(s.rows.map((r) => r.what), ['qkv', 'attention']);
  const byWhat = Object.fromEntries(s.rows.map((r) => [r.what, r]));
  assert.is(byWhat.qkv.addsMedianUs, 3); // 1000 → 4000
  assert.is(byWhat.attention.addsMedianUs, 0.5); // 4000 → 4500
  assert.is(byWhat.qkv.earlyMedianUs, 1); // reached 1 µs before its release
  assert.is(byWhat.attention.earlyMedianUs, 3.5);
  assert.not.ok('o' in byWhat); // the last kernel's end is not recorded
  const unnamed = summarizeTrace(records, 2, ['only', 'two']);
  assert.ok(unnamed.rows.some((r) => r.what === 'grid 10×1×1 block 128'));
});

test('summarizeTrace places marks (block 0, the tag as grid) in the kernel released last before them', () => {
  const mark = (t: number, tag: number): TraceRecord => ({ reachedNs: t, releasedNs: t, grid: [tag, 0, 0], block: 0 });
  const step = (t: number) => [rec(t, t + 1000, 10), mark(t + 1800, 1), mark(t + 3000, 2), rec(t + 500, t + 4000, 20), mark(t + 4200, 1), rec(t + 3000, t + 4500, 30)];
  const s = summarizeTrace([...step(0), ...step(10_000)], 2, ['qkv', 'attention', 'o']);
  assert.is(s.kernelsPerStep, 3); // marks are not kernels
  assert.equal(s.marks, [
    { what: 'qkv', tag: 1, count: 1, afterReleaseMedianUs: 0.8 },
    { what: 'qkv', tag: 2, count: 1, afterReleaseMedianUs: 2 },
    { what: 'attention', tag: 1, count: 1, afterReleaseMedianUs: 0.2 },
  ]);
});

test('summarizeTrace refuses records that do not split into the steps', () => {
  assert.throws(() => summarizeTrace([rec(0, 1), rec(2, 3), rec(4, 5)], 2), (e: unknown) => e instanceof BackendError && /3 records do not split into 2 steps/.test(String(e)));
});

test('ZINFER_CUDA_TRACE=1 builds with -DZINFER_TRACE (its own cubins), and only then', () => {
  const before = process.env.ZINFER_CUDA_TRACE;
  try {
    delete process.env.ZINFER_CUDA_TRACE;
    assert.not.ok(traceBuild());
    assert.not.ok(nvrtcOptions(90, null).includes('-DZINFER_TRACE=1'));
    process.env.ZINFER_CUDA_TRACE = '1';
    assert.ok(traceBuild());
    assert.ok(nvrtcOptions(90, null).includes('-DZINFER_TRACE=1'));
  } finally {
    if (before === undefined) delete process.env.ZINFER_CUDA_TRACE;
    else process.env.ZINFER_CUDA_TRACE = before;
  }
});

test('ZINFER_CUDA_DEFINE adds its switches as -D options, part of the cubin key; a malformed one is a ConfigError naming it', () => {
  const env = { ZINFER_CUDA_DEFINE: 'ZINFER_STREAM_EVICT_FIRST, ZINFER_SPLITS=4' };
  assert.equal(buildDefines(env), ['ZINFER_STREAM_EVICT_FIRST', 'ZINFER_SPLITS=4']);
  const opts = nvrtcOptions(90, null, env);
  assert.ok(opts.includes('-DZINFER_STREAM_EVICT_FIRST') && opts.includes('-DZINFER_SPLITS=4'));
  const req = (options: string[]) => ({ name: 'gemv.cu', source: 'x', headers: new Map<string, string>(), options });
  assert.is.not(cubinKey(req(opts), 90, 'nvrtc'), cubinKey(req(nvrtcOptions(90, null, {})), 90, 'nvrtc'));
  assert.equal(buildDefines({}), []);
  for (const bad of ['FOO', 'ZINFER_X;rm', '-DZINFER_X', 'ZINFER_X=a b']) {
    assert.throws(() => buildDefines({ ZINFER_CUDA_DEFINE: bad }), (e: unknown) => e instanceof ConfigError && (e as ConfigError).info.field === 'ZINFER_CUDA_DEFINE', bad);
  }
});

test.run();
