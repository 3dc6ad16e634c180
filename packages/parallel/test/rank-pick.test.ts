// The output rank's pick (launch/rank-pick.ts): a program without runArgmax / runSample still answers
// with the ids core's host pick gives over its logits, and a step's sample rows are cut along its
// micro-batches in selected-row order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HostRowSampler, type ParallelPlan, type Program, type SampleRow, type StepBatch } from '@zinfer/core';
import { stepBatch } from '@zinfer/core/testing';
import { splitBatch } from '../src/launch/micro-batches.js';
import { ranksChain, runPicked, runRank, splitPick } from '../src/launch/rank-pick.js';

const WIDTH = 6;
const LOGITS = Float32Array.from([0, 3, 1, 3, -1, 2, /* row 1 */ 5, 4, 4.5, 0, Number.NaN, 1]);
const logitsOnly: Program = { run: async () => LOGITS.slice(), dispose: async () => {} };
const row = (p: Partial<SampleRow>): SampleRow => ({ temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, uniform: 0.5, penalized: new Int32Array(0), ...p });
const batch = stepBatch([{ tokens: [1, 2], cached: 0, blocks: [0] }], 16, 'all');

test('runPicked without runArgmax / runSample: run() and the host pick, the same ids', async () => {
  const host = new HostRowSampler();
  assert.equal([...(await runPicked(logitsOnly, batch, { kind: 'argmax' }, host))], [1, 0], 'argmax: lowest id on ties');
  const rows = [row({ topK: 2, uniform: 0.9 }), row({ temperature: 0.5, topP: 0.6, uniform: 0.1 })];
  const want = new HostRowSampler().pick(LOGITS, rows, WIDTH);
  assert.equal([...(await runPicked(logitsOnly, batch, { kind: 'sample', rows }, host))], [...want]);
});

test('runPicked prefers the program\'s own runArgmax and runSample', async () => {
  const seen: string[] = [];
  const device: Program = {
    ...logitsOnly,
    runArgmax: async (b: StepBatch) => (seen.push('argmax'), new Int32Array(b.selectedRows.length).fill(7)),
    runSample: async (_b: StepBatch, rows: readonly SampleRow[]) => (seen.push('sample'), Int32Array.from(rows, (_, i) => i + 40)),
  };
  const host = new HostRowSampler();
  assert.equal([...(await runPicked(device, batch, { kind: 'argmax' }, host))], [7, 7]);
  assert.equal([...(await runPicked(device, batch, { kind: 'sample', rows: [row({}), row({})] }, host))], [40, 41]);
  assert.equal(seen, ['argmax', 'sample']);
});

test('runRank: the output rank answers (picked, or its logits); the others run without output where their program can', async () => {
  const seen: string[] = [];
  const quiet: Program = {
    run: async () => (seen.push('run'), LOGITS.slice()),
    runArgmax: async (b: StepBatch) => (seen.push('argmax'), new Int32Array(b.selectedRows.length).fill(3)),
    runWithoutOutput: async () => void seen.push('without output'),
    dispose: async () => {},
  };
  const host = new HostRowSampler();
  assert.equal([...((await runRank(quiet, batch, true, { kind: 'argmax' }, host, 16)) ?? [])], [3, 3]);
  assert.equal((await runRank(quiet, batch, true, undefined, host, 16))?.length, LOGITS.length, 'no pick: the logits');
  assert.is(await runRank(quiet, batch, false, { kind: 'argmax' }, host, 16), null);
  assert.is(await runRank(quiet, batch, false, undefined, host, 16), null);
  assert.equal(seen, ['argmax', 'run', 'without output', 'without output']);
  seen.length = 0;
  assert.is(await runRank({ ...logitsOnly, run: async () => (seen.push('run'), LOGITS.slice()) }, batch, false, undefined, host, 16), null, 'a program without it: run(), dropped');
  assert.equal(seen, ['run']);
});

test('runRank with a chained pick: every rank chains (its own runArgmaxSteps, else the host chain), only the output rank answers', async () => {
  const decode = stepBatch([{ tokens: [4], cached: 3, blocks: [0, 1] }], 4, 'last');
  const seen: string[] = [];
  const chaining: Program = { ...logitsOnly, runArgmaxSteps: async (b: StepBatch, steps: number) => (seen.push(`steps ${steps}`), new Int32Array(steps * b.tokenIds.length).fill(9)) };
  const host = new HostRowSampler();
  assert.equal([...((await runRank(chaining, decode, true, { kind: 'argmax', steps: 3 }, host, 4)) ?? [])], [9, 9, 9]);
  assert.is(await runRank(chaining, decode, false, { kind: 'argmax', steps: 3 }, host, 4), null);
  assert.equal(seen, ['steps 3', 'steps 3'], 'the non-output rank chains too');
  // Without runArgmaxSteps: runArgmax step by step, each step's id fed into the next, positions one further.
  const fed: [number, number, number][] = [];
  const stepwise: Program = { ...logitsOnly, runArgmax: async (b: StepBatch) => (fed.push([b.tokenIds[0], b.positions[0], b.slots[0]]), Int32Array.of(b.tokenIds[0] + 1)) };
  assert.equal([...((await runRank(stepwise, decode, true, { kind: 'argmax', steps: 3 }, host, 4)) ?? [])], [5, 6, 7]);
  assert.equal(fed, [[4, 3, 3], [5, 4, 4], [6, 5, 5]]);
  // A sampled run: each step's rows, through the program's runSampleSteps, else runSample step by step.
  const steps = [[row({ uniform: 0.1 })], [row({ uniform: 0.2 })]];
  const drawn: number[] = [];
  const sampling: Program = { ...logitsOnly, runSample: async (b: StepBatch, rows: readonly SampleRow[]) => (drawn.push(rows[0].uniform), Int32Array.of(b.tokenIds[0] + 10)) };
  assert.equal([...((await runRank(sampling, decode, true, { kind: 'sampleSteps', rows: steps }, host, 4)) ?? [])], [14, 24]);
  assert.equal(drawn, [0.1, 0.2], 'step j picks with its own rows');
  const own: Program = { ...logitsOnly, runSampleSteps: async (_b: StepBatch, rows: readonly (readonly SampleRow[])[]) => Int32Array.from(rows, (r) => Math.round(r[0].uniform * 100)) };
  assert.equal([...((await runRank(own, decode, true, { kind: 'sampleSteps', rows: steps }, host, 4)) ?? [])], [10, 20]);
  assert.is(await runRank(own, decode, false, { kind: 'sampleSteps', rows: steps }, host, 4), null);
});

test('ranksChain: one stage and the same whole output on every rank', () => {
  const graph = (width: number) => ({ output: 0, values: [{ width }] });
  const plan = (stages: number, widths: number[]) => ({ stages, ranks: widths.map((w) => ({ graph: graph(w) })) }) as unknown as ParallelPlan;
  assert.ok(ranksChain(plan(1, [384, 384])));
  assert.not.ok(ranksChain(plan(2, [384, 384])), 'a pipeline');
  assert.not.ok(ranksChain(plan(1, [384, 192])), 'a rank with part of the output');
});

test('splitPick cuts sample rows along the micro-batches in selected-row order; argmax and none pass through', () => {
  const step = stepBatch([{ tokens: [1, 2, 3], cached: 0, blocks: [0] }, { tokens: [4], cached: 0, blocks: [1] }, { tokens: [5, 6], cached: 0, blocks: [2] }], 16, 'last');
  const parts = splitBatch(step, 3);
  assert.is(parts.length, 3);
  const rows = [row({ uniform: 0.1 }), row({ uniform: 0.2 }), row({ uniform: 0.3 })];
  const picks = splitPick({ kind: 'sample', rows }, parts);
  assert.equal(picks.map((p) => (p?.kind === 'sample' ? p.rows.map((r) => r.uniform) : null)), [[0.1], [0.2], [0.3]]);
  assert.equal(splitPick({ kind: 'argmax' }, parts), [{ kind: 'argmax' }, { kind: 'argmax' }, { kind: 'argmax' }]);
  assert.equal(splitPick(undefined, parts), [undefined, undefined, undefined]);
});

test.run();
