// The streaming plan's read windows when the CUDA backend fuses launches: a weight must stay in its slot
// until the launch that really reads it, which for GPT-2's summed embeddings is the add, not the lookup.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModel, type WeightStream } from '@zinfer/core';
import { planExecution } from '../src/cuda/exec-plan.js';
import { planStream } from '../src/cuda/stream-plan.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');

const streamOf = (groups: string[][], prefetch = 0): WeightStream => ({
  groups, prefetch, acquire: async () => [], release: () => {}, recordCompute: () => {},
});

test('GPT-2 with a streamed position table: its group is read until the add that sums both lookups', async () => {
  const m = await loadModel(join(FIXTURES, 'gpt2'));
  try {
    const exec = planExecution(m.graph);
    const [add] = [...exec.embeddingSums.keys()];
    const addAt = m.graph.nodes.indexOf(add);
    const layer0 = [...m.graph.weights.keys()].filter((n) => n.startsWith('transformer.h.0.'));
    const plan = planStream(m.graph, exec, streamOf([['transformer.wpe.weight'], layer0]), 'f16', 'f16');
    const wpe = plan.groups[0];
    assert.ok(wpe.last >= addAt, `wpe is read until node ${addAt} (the add), its window ends at ${wpe.last}`);
    assert.ok(plan.groups[1].first > wpe.last || plan.slots > 1, 'layer 0 cannot take the slot while the add still reads wpe');
  } finally {
    m.weights.close();
  }
});

test.run();
