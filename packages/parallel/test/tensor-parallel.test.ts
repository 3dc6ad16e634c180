import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadModel, type Program, type StepBatch } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { planTensorParallel, tensorParallel } from '../src/index.js';
import type { RanksProgram } from '../src/launch/rank-program.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const KV = { numBlocks: 8, blockSize: 16 };

/** One sequence's prefill of `ids`, every row's logits selected. */
function prefill(ids: number[]): StepBatch {
  const n = ids.length;
  const positions = Int32Array.from({ length: n }, (_, i) => i);
  return {
    tokenIds: Int32Array.from(ids), positions, slots: positions.slice(),
    sequences: [{ queryStart: 0, queryLength: n, contextLength: n, blockTable: Int32Array.from({ length: KV.numBlocks }, (_, i) => i) }],
    selectedRows: positions.slice(),
  };
}

/** Then one decode step of token `t` at position n. */
function decode(t: number, n: number): StepBatch {
  return {
    tokenIds: Int32Array.of(t), positions: Int32Array.of(n), slots: Int32Array.of(n),
    sequences: [{ queryStart: 0, queryLength: 1, contextLength: n + 1, blockTable: Int32Array.from({ length: KV.numBlocks }, (_, i) => i) }],
    selectedRows: Int32Array.of(0),
  };
}

async function logits(program: Program, ids: number[]): Promise<Float32Array[]> {
  const a = await program.run(prefill(ids.slice(0, -1)));
  const b = await program.run(decode(ids[ids.length - 1], ids.length - 1));
  await program.dispose();
  return [a, b];
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => x.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i][j])))));
  return m;
}

for (const arch of ARCHS) {
  test(`${arch}: tensor-parallel ranks (inline) give the single-device logits within 1e-4`, async () => {
    const dir = join(FIXTURES, arch);
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
    const model = await loadModel(dir);
    const backend = referenceBackend();
    const base = await logits(await backend.compile(model.graph, model.weights, { kvCache: KV }), ids);
    for (const size of [2, 4]) {
      let plan;
      try {
        plan = planTensorParallel(model.graph, size);
      } catch (e) {
        // Only a size that does not divide the heads or MLP may be refused, and it must say so.
        assert.instance(e, ConfigError);
        continue;
      }
      const program = await tensorParallel({ size, ranks: 'inline' }).launch({ plan, backend, model: { dir }, weights: model.weights, kvCache: KV });
      const got = await logits(program, ids);
      const d = maxDiff(base, got);
      assert.ok(d <= 1e-4, `${arch} tp=${size}: max abs logit difference ${d}`);
    }
    model.weights.close();
  });
}

test('a rank graph holds only its share: heads, KV heads and MLP width divided, collectives inserted', async () => {
  const model = await loadModel(join(FIXTURES, 'llama3')); // 4 heads, 2 KV heads, MLP 128, vocab 384
  const plan = planTensorParallel(model.graph, 4);
  const g = plan.ranks[1].graph;
  const att = g.nodes.find((n) => n.op === 'attention')!;
  assert.equal([att.attrs.heads, att.attrs.kvHeads], [1, 1]);
  assert.is(g.kv.kvHeads, 1);
  assert.equal(g.weights.get('model.layers.0.mlp.gate_proj.weight')!.shape, [32, 64]);
  assert.equal(g.weights.get('model.embed_tokens.weight')!.shape, [96, 64]);
  // Ranks 0,1 share KV head 0 and ranks 2,3 KV head 1 (GQA with fewer KV heads than ranks).
  const kShard = (r: number) => plan.ranks[r].shards.find((s) => s.weight === 'model.layers.0.self_attn.k_proj.weight')!;
  assert.equal([0, 1, 2, 3].map((r) => kShard(r).start), [0, 0, 16, 16]);
  const collectives = g.nodes.filter((n) => n.op === 'allReduce').length;
  assert.is(collectives, 1 + 2 * 2, 'embedding + two per layer');
  assert.is(g.nodes.filter((n) => n.op === 'allGather').length, 1);
  model.weights.close();
});

test('sizes that do not divide the heads are refused with a ConfigError naming the field', async () => {
  const model = await loadModel(join(FIXTURES, 'llama2')); // 4 heads
  try {
    planTensorParallel(model.graph, 3);
    assert.unreachable('expected a ConfigError');
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.match((e as Error).message, 'num_attention_heads');
  }
  model.weights.close();
});

test('worker-thread ranks (one backend per rank, shards read in the rank) match the single-device logits', async () => {
  for (const arch of ['qwen3', 'gpt2']) {
    const dir = join(FIXTURES, arch);
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
    const model = await loadModel(dir);
    const backend = referenceBackend();
    const base = await logits(await backend.compile(model.graph, model.weights, { kvCache: KV }), ids);
    const strategy = tensorParallel({ size: 2 });
    const plan = strategy.plan(model.graph, []);
    const got = await logits(await strategy.launch({ plan, backend, model: { dir }, weights: model.weights, kvCache: KV }), ids);
    assert.ok(maxDiff(base, got) <= 1e-4, arch);
    model.weights.close();
  }
});

test('a leader spinning while steps are out (ZINFER_LEADER_SPIN=1) gets the same logits, and its timers still run', async () => {
  const dir = join(FIXTURES, 'llama2');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
  const model = await loadModel(dir);
  const backend = referenceBackend();
  const single = await backend.compile(model.graph, model.weights, { kvCache: KV });
  const strategy = tensorParallel({ size: 2 });
  const program = await strategy.launch({ plan: strategy.plan(model.graph, []), backend, model: { dir }, weights: model.weights, kvCache: KV });
  const before = process.env.ZINFER_LEADER_SPIN;
  process.env.ZINFER_LEADER_SPIN = '1'; // read at each step
  try {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const steps = [prefill(ids.slice(0, 3)), ...ids.slice(3).map((t, i) => decode(t, 3 + i))];
    for (const [i, step] of steps.entries()) {
      const [want, got] = [await single.run(step), await program.run(step)];
      assert.ok(maxDiff([want], [got]) <= 1e-4, `step ${i}`);
    }
    clearInterval(timer);
    assert.ok(ticks > 0, 'a timer fired while the leader spun');
  } finally {
    if (before === undefined) delete process.env.ZINFER_LEADER_SPIN;
    else process.env.ZINFER_LEADER_SPIN = before;
    await program.dispose();
    await single.dispose();
    model.weights.close();
  }
});

test('timeSteps: every worker rank runs a step back to back in its thread and answers with its mean ms; the program steps on as before', async () => {
  const dir = join(FIXTURES, 'llama2');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
  const model = await loadModel(dir);
  const strategy = tensorParallel({ size: 2 });
  const program = (await strategy.launch({ plan: strategy.plan(model.graph, []), backend: referenceBackend(), model: { dir }, weights: model.weights, kvCache: KV })) as RanksProgram;
  try {
    await program.run(prefill(ids.slice(0, -1)));
    const step = decode(ids[ids.length - 1], ids.length - 1);
    const before = await program.runArgmax!(step);
    const ms = await program.timeSteps(step, 3);
    assert.is(ms.length, 2, 'one mean a rank');
    assert.ok(ms.every((m) => m > 0 && Number.isFinite(m)), JSON.stringify(ms));
    assert.equal([...(await program.runArgmax!(step))], [...before], 'the same step still picks the same token');
    const refused = await program.timeSteps(step, 0).then(() => null, (e: Error) => e);
    assert.match(refused?.message ?? '', /at least once/);
  } finally {
    await program.dispose();
    model.weights.close();
  }
});

test('a failing rank fails the step with a clear error instead of hanging, and the program stays failed', async () => {
  const dir = join(FIXTURES, 'llama2');
  const model = await loadModel(dir);
  const strategy = tensorParallel({ size: 2 });
  const program = await strategy.launch({ plan: strategy.plan(model.graph, []), backend: referenceBackend(), model: { dir }, weights: model.weights, kvCache: KV });
  const bad = prefill([1, 2, 3]);
  bad.slots = Int32Array.of(0, 1, 99999); // outside the KV cache: the backend rejects it on every rank
  const t0 = Date.now();
  try {
    await program.run(bad);
    assert.unreachable('expected the step to fail');
  } catch (e) {
    assert.match((e as Error).message, /rank \d/);
  }
  assert.ok(Date.now() - t0 < 5000, 'failure is reported within seconds');
  try {
    await program.run(prefill([1, 2, 3]));
    assert.unreachable('expected the broken program to refuse');
  } catch (e) {
    assert.match((e as Error).message, 'rank');
  }
  await program.dispose();
  model.weights.close();
});

test.run();
