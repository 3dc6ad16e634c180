import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadModel, type StepBatch } from '@zinfer/core';
import { planPipeline, splitBatch } from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');

test('stages split the layers; each has its own KV layers, a recv in and a send out', async () => {
  const model = await loadModel(join(FIXTURES, 'gpt-neox')); // 2 layers, parallel residual
  const [a, b] = planPipeline(model.graph, 2);
  assert.is(a.kv.layers, 1);
  assert.is(b.kv.layers, 1);
  assert.equal(a.nodes.filter((n) => n.op === 'attention').map((n) => n.attrs), b.nodes.filter((n) => n.op === 'attention').map((n) => n.attrs));
  assert.is(a.nodes.at(-1)!.op, 'send');
  assert.is(b.nodes[0].op, 'recv');
  assert.ok(!b.nodes.some((n) => n.op === 'embedding'), 'the token embedding stays in stage 0');
  assert.ok(!a.weights.has('embed_out.weight'), 'the LM head is in the last stage only');
  assert.is(a.nodes.length + b.nodes.length, model.graph.nodes.length + 2);
  try {
    planPipeline(model.graph, 3);
    assert.unreachable('3 stages of a 2-layer model');
  } catch (e) {
    assert.instance(e, ConfigError);
  }
  model.weights.close();
});

test('micro-batches split by sequence with balanced rows and re-based indices', () => {
  const seqLens = [5, 1, 1, 6, 1];
  let start = 0;
  const sequences = seqLens.map((n) => {
    const s = { queryStart: start, queryLength: n, contextLength: n + 3, blockTable: Int32Array.of(0) };
    start += n;
    return s;
  });
  const rows = start;
  const batch: StepBatch = {
    tokenIds: Int32Array.from({ length: rows }, (_, i) => 100 + i),
    positions: Int32Array.from({ length: rows }, (_, i) => i),
    slots: Int32Array.from({ length: rows }, (_, i) => i),
    sequences,
    selectedRows: Int32Array.from(sequences.map((s) => s.queryStart + s.queryLength - 1)),
  };
  const parts = splitBatch(batch, 2);
  assert.is(parts.length, 2);
  assert.equal(parts.flatMap((p) => [...p.tokenIds]), [...batch.tokenIds]);
  assert.equal(parts.map((p) => p.sequences.length), [3, 2]);
  assert.equal([...parts[1].selectedRows], [5, 6]);
  assert.equal(parts[1].sequences.map((s) => s.queryStart), [0, 6]);
  assert.equal(splitBatch(batch, 1), [batch]);
});

test.run();
