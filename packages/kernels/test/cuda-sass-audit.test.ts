// The SASS audit of loads before griddepcontrol.wait (src/cuda/sass-audit.ts) on listings shaped as
// `cuobjdump -sass` prints them. The listings themselves come from the GPU machine (scripts/gpu-check.mjs, part sass).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadsBeforeWaits, preWaitViolations } from '../src/cuda/sass-audit.js';

const ins = (at: number, text: string) => `        /*${at.toString(16).padStart(4, '0')}*/                   ${text} ;                /* 0x000000000000782e */\n                                                                                   /* 0x000fe20000000000 */`;
const fn = (name: string, body: string[]) => [`\t\tFunction : ${name}`, `\t.headerflags\t@"EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90"`, ...body.map((t, i) => ins(16 * i, t))].join('\n');
const times = (n: number, text: string) => Array.from({ length: n }, () => text);
const scalarPath = [...times(1, 'ACQBULK'), ...times(15, '@!P3 LDG.E.U16 R10, desc[UR6][R8.64]')];
const stream = (n: number) => times(n, '@!P4 LDG.E.NA.128.CONSTANT R64, desc[UR6][R8.64]');

// Session 19's SASS of gemv1d_f16_f16 before the fix: the vector path's 16 weight loads after its wait.
const moved = fn('gemv1d_f16_f16', ['PREEXIT', ...scalarPath, 'ACQBULK', ...stream(16), 'LDG.E.128.CONSTANT R60, desc[UR6][R60.64]', 'EXIT']);
// After it: the loads, then the wait.
const kept = fn('gemv1o_f16_f16', ['PREEXIT', ...scalarPath, ...stream(8), 'ACQBULK', 'LDG.E.128.CONSTANT R60, desc[UR6][R60.64]', 'EXIT']);

test('loads are counted between waits, the weight stream apart; kernels that never wait are left out', () => {
  const listing = [moved, kept, fn('rms_norm_f16', ['ACQBULK', 'LDG.E R2, desc[UR6][R2.64]']), fn('read_bandwidth', ['LDG.E.128 R4, desc[UR4][R2.64]', 'EXIT'])].join('\n');
  const w = loadsBeforeWaits(listing);
  assert.equal([...w.keys()], ['gemv1d_f16_f16', 'gemv1o_f16_f16', 'rms_norm_f16']);
  assert.equal(w.get('gemv1d_f16_f16'), { loads: [0, 15], stream: [0, 0], nc: 17 });
  assert.equal(w.get('gemv1o_f16_f16'), { loads: [0, 23], stream: [0, 8], nc: 9 });
  assert.equal(w.get('rms_norm_f16'), { loads: [0], stream: [0], nc: 0 });
});

test('a GEMV whose weights load after its wait, or an attention with nothing before its first, is named; the kept form passes', () => {
  const attnOk = fn('attn_decode16p_f16', ['LDG.E R4, desc[UR6][R2.64]', ...times(21, 'LDG.E.128 R8, desc[UR6][R6.64]'), 'ACQBULK', 'LDG.E.128 R8, desc[UR6][R6.64]']);
  const attnMoved = fn('attn_decode16_bf16', ['ACQBULK', ...times(6, 'LDG.E R4, desc[UR6][R2.64]')]);
  const { kernels, violations } = preWaitViolations([moved, kept, attnOk, attnMoved].join('\n'));
  assert.is(kernels, 4);
  assert.is(violations.length, 2);
  assert.match(violations[0], /^gemv1d_f16_f16: no wait has 8 weight loads before it .*counts 0\|0/);
  assert.match(violations[1], /^attn_decode16_bf16: nothing loaded before its first wait/);
  assert.equal(preWaitViolations([kept, attnOk].join('\n')), { kernels: 2, violations: [] });
});

test('a kernel that reads only activations may not read them through the non-coherent path, waits or not', () => {
  // add_f16 as built with __ldg (ld.global.nc) before session 22, and as built with ld_act16.
  const nc = fn('add_f16', ['ACQBULK', 'LDG.E.128.CONSTANT R4, desc[UR6][R2.64]', 'LDG.E.128.CONSTANT R8, desc[UR6][R6.64]', 'EXIT']);
  const hoisted = fn('activation_bf16', ['LDG.E.128.CONSTANT R4, desc[UR6][R2.64]', 'ACQBULK', 'EXIT']);
  const coherent = fn('add_bf16', ['ACQBULK', 'LDG.E.128 R4, desc[UR6][R2.64]', 'LDG.E.128 R8, desc[UR6][R6.64]', 'EXIT']);
  const { kernels, violations } = preWaitViolations([nc, hoisted, coherent].join('\n'));
  assert.is(kernels, 3);
  assert.equal(violations, [
    'add_f16: 2 non-coherent loads (activations only: ld.global.nc may run before the wait)',
    'activation_bf16: 1 non-coherent loads (activations only: ld.global.nc may run before the wait)',
  ]);
});

test.run();
