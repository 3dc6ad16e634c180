// Known answers for embedding, linear, the norms and the elementwise ops, on tiny hand-written inputs.
// Expected values come from the small formulas inline here, never from a backend.
import { toF32, type FloatDType } from '../dtype.js';
import type { ActivationFn } from '../ops.js';
import { expectBackendError, expectClose } from './compare.js';
import { opGraph, rowsBatch, runOp, type ConformanceCase, type Harness } from './harness.js';
import { matrix, tensorOf } from './weights.js';

export const FLOAT_DTYPES: readonly FloatDType[] = ['f32', 'f16', 'bf16'];
export const ACTIVATIONS: readonly ActivationFn[] = ['relu', 'silu', 'gelu', 'gelu_tanh'];

const X_ACT = [-3, -1, -0.5, 0, 0.5, 1, 2, 3];
/** Standard normal CDF Φ at X_ACT (exact GELU is x·Φ(x)), from 0.5·(1 + erf(x/√2)) in double precision. */
const PHI = [0.0013498980316301035, 0.15865525393145707, 0.3085375387259869, 0.5, 0.6914624612740131, 0.8413447460685429, 0.9772498680518208, 0.9986501019683699];
const UP = [2, -1, 0.5, 4, -3, 1.5, 0.25, -2];

function activationOf(fn: ActivationFn, x: number, i: number): number {
  switch (fn) {
    case 'relu':
      return Math.max(x, 0);
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'gelu':
      return x * PHI[i];
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  }
}

export function knownAnswerCases(h: Harness): ConformanceCase[] {
  const { backend, tolerance } = h;
  const cases: ConformanceCase[] = [];
  const add = (name: string, run: () => Promise<void>) => cases.push({ name: `known answer: ${name}`, run });

  // Values exact in f16 and bf16, so every dtype must give exactly these rows.
  const table = [0, 1, 2, 3].map((i) => [i * 10 + 0.5, i * 10 + 1.5, -(i * 10 + 2.5)]);
  for (const dtype of FLOAT_DTYPES) {
    add(`embedding (${dtype} table, offset 1, scale 0.5)`, async () => {
      const tensors = new Map([['emb', matrix(dtype, table)]]);
      const graph = opGraph(tensors, (b) => b.embedding(b.inputs.tokenIds, 'emb', { offset: 1, scale: 0.5 }));
      const ids = [2, 0, -1];
      const out = await runOp(backend, tensors, graph, { ...rowsBatch(3), tokenIds: Int32Array.from(ids) });
      expectClose(out, ids.flatMap((id) => table[id + 1].map((v) => v * 0.5)), tolerance, `embedding ${dtype}, ids [${ids}]`, 3);
    });
  }
  add('embedding of an id outside the table rejects with a BackendError naming the table and id', async () => {
    const tensors = new Map([['emb.small', matrix('f32', table)]]);
    const graph = opGraph(tensors, (b) => b.embedding(b.inputs.tokenIds, 'emb.small'));
    await expectBackendError(() => runOp(backend, tensors, graph, { ...rowsBatch(2), tokenIds: Int32Array.of(1, 9) }), 'embedding id 9 of a 4-row table', ['emb.small', '9']);
  });

  const x = [[1, 2, 3], [-1, 0.5, 2]];
  const w = [[0.1, -1 / 3, 0.7], [2.2, 0.3, -0.05]]; // inexact in f16/bf16: the backend must use the stored rounding
  for (const dtype of FLOAT_DTYPES) {
    add(`linear (${dtype} weight and bias, 2×3 · 3→2)`, async () => {
      const W = matrix(dtype, w);
      const bias = tensorOf(dtype, [2], [0.125, -2.3]);
      const tensors = new Map([['x', matrix('f32', x)], ['w', W], ['b', bias]]);
      const graph = opGraph(tensors, (b, input) => b.linear(input('x'), 'w', 'b'));
      const [wd, bd] = [toF32(dtype, W.data), toF32(dtype, bias.data)]; // what the stored elements mean
      const expected = x.flatMap((row) => [0, 1].map((o) => row.reduce((s, xi, i) => s + xi * wd[o * 3 + i], 0) + bd[o]));
      expectClose(await runOp(backend, tensors, graph, rowsBatch(2)), expected, tolerance, `linear ${dtype}`, 2);
    });
  }

  const xn = [[1, 2, 3, 4], [-2, 0, 0, 6]];
  for (const dtype of FLOAT_DTYPES) {
    add(`layerNorm (${dtype} weight and bias) of [1, 2, 3, 4] and [-2, 0, 0, 6]`, async () => {
      const [weight, bias, eps] = [[1, 0.5, 2, -1], [0, 1, -1, 0.25], 1e-5];
      const tensors = new Map([['x', matrix('f32', xn)], ['w', tensorOf(dtype, [4], weight)], ['b', tensorOf(dtype, [4], bias)]]);
      const graph = opGraph(tensors, (b, input) => b.layerNorm(input('x'), 'w', 'b', eps));
      const expected = xn.flatMap((row) => {
        const mean = row.reduce((a, v) => a + v, 0) / 4;
        const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / 4; // biased
        return row.map((v, j) => ((v - mean) / Math.sqrt(variance + eps)) * weight[j] + bias[j]);
      });
      expectClose(await runOp(backend, tensors, graph, rowsBatch(2)), expected, tolerance, `layerNorm ${dtype}`, 4);
    });
    add(`rmsNorm (${dtype} weight) of [1, 2, 3, 4], whole row and per head of 2`, async () => {
      const eps = 1e-6;
      const tensors = new Map([['x', matrix('f32', [[1, 2, 3, 4]])], ['w', tensorOf(dtype, [4], [1, 2, 0.5, -1])], ['wh', tensorOf(dtype, [2], [2, -0.5])]]);
      const row = await runOp(backend, tensors, opGraph(tensors, (b, input) => b.rmsNorm(input('x'), 'w', eps)), rowsBatch(1));
      const rms = Math.sqrt((1 + 4 + 9 + 16) / 4 + eps);
      expectClose(row, [1 / rms, 4 / rms, 1.5 / rms, -4 / rms], tolerance, `rmsNorm ${dtype} over 4`, 4);
      const heads = await runOp(backend, tensors, opGraph(tensors, (b, input) => b.rmsNorm(input('x'), 'wh', eps, 2)), rowsBatch(1));
      const [r1, r2] = [Math.sqrt((1 + 4) / 2 + eps), Math.sqrt((9 + 16) / 2 + eps)];
      expectClose(heads, [2 / r1, -1 / r1, 6 / r2, -2 / r2], tolerance, `rmsNorm ${dtype} per head (dim 2)`, 4);
    });
  }

  add('add of two rows', async () => {
    const tensors = new Map([['a', matrix('f32', [[1, -2, 3.5]])], ['b', matrix('f32', [[0.25, 2, -1]])]]);
    const graph = opGraph(tensors, (b, input) => b.add(input('a'), input('b')));
    expectClose(await runOp(backend, tensors, graph, rowsBatch(1)), [1.25, 0, 2.5], tolerance, 'add', 3);
  });
  for (const fn of ACTIVATIONS) {
    add(`activation ${fn} and gatedActivation ${fn} at [${X_ACT}]`, async () => {
      const tensors = new Map([['x', matrix('f32', [X_ACT])], ['up', matrix('f32', [UP])]]);
      const plain = await runOp(backend, tensors, opGraph(tensors, (b, input) => b.activation(input('x'), fn)), rowsBatch(1));
      expectClose(plain, X_ACT.map((v, i) => activationOf(fn, v, i)), tolerance, `activation ${fn}`);
      const gated = await runOp(backend, tensors, opGraph(tensors, (b, input) => b.gatedActivation(input('x'), input('up'), fn)), rowsBatch(1));
      expectClose(gated, X_ACT.map((v, i) => activationOf(fn, v, i) * UP[i]), tolerance, `gatedActivation ${fn} (fn(gate)·up)`);
    });
  }
  return cases;
}
