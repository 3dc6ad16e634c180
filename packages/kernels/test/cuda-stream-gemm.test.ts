// A stream's cuBLASLt GEMMs (stream-gemm.ts) without a GPU: a recording cuBLASLt. What runs on the GPU:
// scripts/gpu-check.mjs (every GEMM, the residual-adding ones included, against the reference backend).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignmentOf, type GemmPlan } from '../src/cuda/cublas.js';
import type { CudaDevice } from '../src/cuda/device.js';
import { GEMM_WORKSPACE_BYTES, StreamGemm, type GemmStream } from '../src/cuda/stream-gemm.js';
import type { GemmArgs } from '../src/cuda/gpu.js';

function rig() {
  const plans: { key: string; ws: number }[] = [];
  const runs: { y: bigint; c?: bigint; ws: bigint; wsBytes: number }[] = [];
  const lib = {
    plan(g: GemmArgs, ws: number): GemmPlan {
      plans.push({ key: `${g.rows}×${g.outF}×${g.inF}`, ws });
      return { key: `${g.rows}`, algo: Buffer.alloc(64), desc: null, layouts: [null, null, null, null] };
    },
    run(_stream: unknown, _plan: GemmPlan, g: GemmArgs, ws: bigint, wsBytes: number) {
      runs.push({ y: g.y, c: g.c, ws, wsBytes });
    },
  };
  const device = { gemmLibrary: () => lib } as unknown as CudaDevice;
  const allocs: { ptr: bigint; bytes: number; what: string }[] = [];
  const freed: bigint[] = [];
  const stream: GemmStream = {
    stream: 7n,
    alloc: (bytes, what) => {
      const ptr = BigInt(0x1000 * (allocs.length + 1));
      allocs.push({ ptr, bytes, what });
      return ptr;
    },
    free: (ptr) => void freed.push(ptr),
  };
  return { gemm: new StreamGemm(device, stream), plans, runs, allocs, freed };
}

const args = (rows: number, extra: Partial<GemmArgs> = {}): GemmArgs => ({ y: 0xa000n, x: 0xb000n, w: 0xc000n, dtype: 'f16', yDtype: 'f16', rows, inF: 64, outF: 48, ...extra });

test('one workspace a stream, allocated at the first call outside a capture; C passed through; dispose frees it', () => {
  const r = rig();
  r.gemm.run(args(16), true);
  assert.is(r.allocs.length, 0, 'no allocation inside a capture (the graph would own it)');
  assert.equal(r.plans[0], { key: '16×48×64', ws: 0 });
  assert.equal(r.runs[0], { y: 0xa000n, c: undefined, ws: 0n, wsBytes: 0 });
  r.gemm.run(args(64, { c: 0xd000n }), false);
  r.gemm.run(args(64), false);
  assert.equal(r.allocs, [{ ptr: 0x1000n, bytes: GEMM_WORKSPACE_BYTES, what: 'cuBLASLt workspace' }]);
  assert.equal(r.runs.slice(1), [
    { y: 0xa000n, c: 0xd000n, ws: 0x1000n, wsBytes: GEMM_WORKSPACE_BYTES },
    { y: 0xa000n, c: undefined, ws: 0x1000n, wsBytes: GEMM_WORKSPACE_BYTES },
  ]);
  assert.ok(r.plans.slice(1).every((p) => p.ws === GEMM_WORKSPACE_BYTES));
  r.gemm.dispose();
  assert.equal(r.freed, [0x1000n]);
});

test('alignmentOf: the largest power of two up to 256 dividing an address (the heuristic must respect it)', () => {
  assert.equal([0x1000n, 0x1080n, 0x1002n, 0x1001n, 0n].map(alignmentOf), [256, 128, 2, 1, 256]);
});

test.run();
