// The cuBLASLt GEMM's algorithm choice per shape (gemm-tuning.ts), without a GPU: a scripted cuBLASLt whose
// candidates take known times under a fake driver's events. What runs on the GPU: scripts/gpu-check.mjs
// (every GEMM against the reference backend) and scripts/gpu-bench.mjs (the 64-row GEMMs' share of read).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignmentOf, type GemmPlan } from '../src/cuda/cublas.js';
import type { CudaDevice } from '../src/cuda/device.js';
import { GEMM_TUNE_MAX_ROWS, GEMM_WORKSPACE_BYTES, setGemmTuning, StreamGemm, type GemmStream } from '../src/cuda/gemm-tuning.js';
import type { GemmArgs } from '../src/cuda/gpu.js';

/** A cuBLASLt with `times[i]` ms a call for candidate i, a driver whose events add up the calls between them. */
function rig(times: number[]) {
  const log: { y: bigint; c?: bigint; algo: number }[] = [];
  const explored: boolean[] = [];
  const plans = new Map<string, GemmPlan>();
  let clock = 0;
  const marks = new Map<unknown, number>();
  const lib = {
    plan(g: GemmArgs, ws: number, explore = false): GemmPlan {
      explored.push(explore);
      const key = `${g.rows}×${g.outF}×${g.inF} ws${ws}`;
      let p = plans.get(key);
      if (!p) plans.set(key, (p = { key, algos: times.map(() => Buffer.alloc(64)), chosen: 0, decidedAt: -1, timesMs: null, desc: null, layouts: [null, null, null, null] }));
      return p;
    },
    run(_stream: unknown, plan: GemmPlan, g: GemmArgs, _ws: bigint, _wsBytes: number, algo = plan.chosen) {
      clock += times[algo];
      log.push({ y: g.y, c: g.c, algo });
    },
  };
  let events = 0;
  const api = {
    cuEventCreate: (e: [unknown]) => ((e[0] = `event${events++}`), 0),
    cuEventRecord: (e: unknown) => (marks.set(e, clock), 0),
    cuEventSynchronize: () => 0,
    cuEventElapsedTime: (ms: [number], a: unknown, b: unknown) => ((ms[0] = marks.get(b)! - marks.get(a)!), 0),
    cuEventDestroy_v2: () => ((events--), 0),
  };
  const device = { gemmLibrary: () => lib, driver: { api, check: (_: string, s: number) => assert.is(s, 0) } } as unknown as CudaDevice;
  const allocs: { ptr: bigint; bytes: number; what: string }[] = [];
  const freed: bigint[] = [];
  const fills: bigint[] = [];
  const stream: GemmStream & { capturing: boolean } = {
    stream: 7n,
    capturing: false,
    l2Bytes: 1000,
    fill32: (dst, _value, count) => {
      assert.is(count, 500, 'twice the L2, in words');
      fills.push(dst);
    },
    alloc: (bytes, what) => {
      const ptr = BigInt(0x1000 * (allocs.length + 1));
      allocs.push({ ptr, bytes, what });
      return ptr;
    },
    free: (ptr) => void freed.push(ptr),
    synchronize: () => {},
  };
  return { gemm: new StreamGemm(device, stream), stream, log, allocs, freed, fills, plans, explored, liveEvents: () => events };
}

const args = (rows: number, extra: Partial<GemmArgs> = {}): GemmArgs => ({ y: 0xa000n, x: 0xb000n, w: 0xc000n, dtype: 'f16', yDtype: 'f16', rows, inF: 64, outF: 48, ...extra });

test('a decode-sized shape times every candidate once, into a scratch output, and then runs the fastest', () => {
  const r = rig([3, 1, 2]);
  r.gemm.run(args(64, { c: 0xd000n }));
  assert.equal(r.allocs.map((a) => [a.what, a.bytes]), [['cuBLASLt workspace', GEMM_WORKSPACE_BYTES], ['GEMM tuning output', 64 * 48 * 2], ['GEMM tuning L2 flush', 2000]]);
  const [scratch, flush] = [r.allocs[1].ptr, r.allocs[2].ptr];
  const trials = r.log.slice(0, -1);
  assert.is(trials.length, 3 * 6, 'a warm-up and five timed calls per candidate');
  assert.ok(trials.every((t) => t.y === scratch && t.c === 0xd000n), 'the trials write the scratch output, never y');
  assert.equal(r.fills, Array(15).fill(flush), 'L2 overwritten before every timed call');
  assert.equal(r.freed, [flush, scratch]);
  assert.equal(r.log[r.log.length - 1], { y: 0xa000n, c: 0xd000n, algo: 1 });
  assert.equal([...r.plans.values()][0].timesMs, [3, 1, 2], 'ms a call per candidate');
  assert.equal(r.explored, [true], 'a shape to time asks for split-K candidates too');
  // The next call of that shape runs at once with the choice; another shape is timed on its own.
  r.gemm.run(args(64, { c: 0xd000n }));
  assert.equal(r.log.slice(-1), [{ y: 0xa000n, c: 0xd000n, algo: 1 }]);
  assert.is(r.log.length, 18 + 2);
  r.gemm.run(args(32));
  assert.is(r.log.length, 20 + 19);
  assert.is(r.allocs.length, 5, 'one workspace for the stream (and a scratch output and L2 flush per timed shape)');
  r.gemm.dispose();
  assert.ok(r.freed.includes(r.allocs[0].ptr) && r.liveEvents() === 0);
});

test('prompt-sized shapes, calls while a graph is captured and ZINFER_GEMM_TUNE=off keep the heuristic first pick untimed', () => {
  const r = rig([3, 1, 2]);
  r.gemm.run(args(GEMM_TUNE_MAX_ROWS + 1));
  assert.equal(r.log, [{ y: 0xa000n, c: undefined, algo: 0 }]);
  assert.equal(r.explored, [false], 'no split-K candidates for a shape never timed');
  r.stream.capturing = true;
  r.gemm.run(args(16));
  assert.equal(r.log.slice(1), [{ y: 0xa000n, c: undefined, algo: 0 }]);
  r.stream.capturing = false;
  setGemmTuning('off');
  try {
    r.gemm.run(args(8));
    assert.equal(r.log.slice(2), [{ y: 0xa000n, c: undefined, algo: 0 }]);
  } finally {
    setGemmTuning('on');
  }
  r.gemm.run(args(16)); // seen while capturing, never timed since: timed now
  assert.is(r.log.length, 3 + 19);
  assert.is(r.log[r.log.length - 1].algo, 1);
});

test('a first call inside a capture allocates no workspace (the graph would own it); the next eager call does', () => {
  const r = rig([1]);
  r.stream.capturing = true;
  r.gemm.run(args(16));
  assert.is(r.allocs.length, 0);
  assert.ok(r.plans.has('16×48×64 ws0'));
  r.stream.capturing = false;
  r.gemm.run(args(16));
  assert.equal(r.allocs.map((a) => a.what), ['cuBLASLt workspace']);
  assert.ok(r.plans.has(`16×48×64 ws${GEMM_WORKSPACE_BYTES}`));
});

test('alignmentOf: the largest power of two up to 256 dividing an address', () => {
  assert.equal([0x1000n, 0x1080n, 0x1002n, 0x1001n, 0n].map(alignmentOf), [256, 128, 2, 1, 256]);
});

test.run();
