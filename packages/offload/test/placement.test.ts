// The placement from byte budgets: layers on the device while they fit after the slots and the non-layer
// weights, the rest in the tier; budgets too small fail naming the field and the bytes needed.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CapacityError, ConfigError, type KernelBackend } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { planPlacement, weightOffload } from '../src/index.js';
import { modelBytes, runModel } from './helpers.js';

async function rejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, field: string): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, cls, String(e));
    assert.is((e as { info: { field?: string } }).info.field, field, (e as Error).message);
    return e as Error;
  }
  throw new Error(`expected ${cls.name} naming ${field}`);
}

test('planPlacement: slots and non-layer weights first, then leading layers while they fit', () => {
  const groups = [100, 100, 100, 100];
  assert.equal(planPlacement({ deviceMemory: 1000, prefetch: 1, nonLayerBytes: 50, groupBytes: groups }), { resident: 4, slotBytes: 0, deviceBytes: 450 });
  assert.equal(planPlacement({ deviceMemory: 400, prefetch: 1, nonLayerBytes: 50, groupBytes: groups }), { resident: 1, slotBytes: 200, deviceBytes: 350 });
  assert.equal(planPlacement({ deviceMemory: undefined, prefetch: 0, nonLayerBytes: 50, groupBytes: groups }), { resident: 0, slotBytes: 100, deviceBytes: 150 });
  const e = (() => {
    try {
      planPlacement({ deviceMemory: 249, prefetch: 1, nonLayerBytes: 50, groupBytes: groups });
    } catch (err) {
      return err as CapacityError;
    }
  })();
  assert.instance(e, CapacityError);
  assert.is(e!.info.field, 'offload.deviceMemory');
  assert.match(e!.info.expected!, 'at least 250 bytes');
});

test('disk tier: a device budget below the model bytes runs from disk, identical to resident', async () => {
  const sizes = await modelBytes('gpt2');
  const budget = sizes.nonLayer + Math.max(...sizes.groups); // one streaming slot (prefetch 0), no room for a resident layer
  assert.ok(budget < sizes.total);
  const resident = await runModel('gpt2', referenceBackend());
  let file = '';
  const r = await runModel('gpt2', referenceBackend(), weightOffload({ tier: 'disk', deviceMemory: budget, prefetch: 0 }), (p) => {
    assert.is(p.plan.resident, 0);
    assert.equal(p.streamedLayers, [0, 1]);
    assert.ok(p.plan.deviceBytes <= budget, `${p.plan.deviceBytes} ≤ ${budget}`);
    assert.is(p.deviceBytes, p.plan.deviceBytes, "the placement reports its device bytes (the engine's throughput mode reads them)");
    assert.match(p.summary[0], /^device: .*layers none resident/);
    assert.match(p.summary[1], /^disk: layers 0-1 streamed/);
    file = p.file!;
    assert.ok(existsSync(file));
  });
  assert.equal(r.greedy.tokens, resident.greedy.tokens);
  assert.equal(r.sampled.tokens, resident.sampled.tokens);
  r.greedy.promptLogits!.forEach((row, i) => assert.ok(row.every((x, j) => Object.is(x, resident.greedy.promptLogits![i][j]))));
  assert.not.ok(existsSync(dirname(file)), 'close() removes the offload directory');
});

test('a budget that holds every weight streams nothing; one too small names offload.deviceMemory', async () => {
  const sizes = await modelBytes('llama3');
  await runModel('llama3', referenceBackend(), weightOffload({ tier: 'disk', deviceMemory: sizes.total }), (p) => {
    assert.is(p.stream, null);
    assert.is(p.plan.resident, sizes.groups.length);
  });
  const e = await rejects(runModel('llama3', referenceBackend(), weightOffload({ tier: 'disk', deviceMemory: sizes.nonLayer })), CapacityError, 'offload.deviceMemory');
  assert.match(e.message, String(sizes.nonLayer + 2 * Math.max(...sizes.groups)));
});

test('host tier: hostMemory too small names offload.hostMemory; allocHost gives each streamed layer its memory', async () => {
  await rejects(runModel('llama3', referenceBackend(), weightOffload({ tier: 'host', hostMemory: 1000 })), CapacityError, 'offload.hostMemory');
  const asked: number[] = [];
  const pinned: KernelBackend = { ...referenceBackend(), allocHost: (n) => (asked.push(n), new ArrayBuffer(n)) };
  let streamed = 0;
  const r = await runModel('llama3', pinned, weightOffload({ tier: 'host' }), (p) => {
    streamed = p.stream!.groups.length;
  });
  assert.ok(streamed > 1);
  assert.is(asked.length, streamed, 'one allocHost per streamed layer');
  assert.ok(asked.every((n) => n > 0));
  assert.match(r.summary[1], 'pinned memory');
});

test('options: each wrong one is a ConfigError naming its field', () => {
  const bad: [object, string][] = [
    [{ tier: 'tape' }, 'offload.tier'],
    [{ tier: 'disk', prefetch: -1 }, 'offload.prefetch'],
    [{ tier: 'disk', prefetch: 2, buffers: 2 }, 'offload.buffers'],
    [{ tier: 'disk', deviceMemory: 1.5 }, 'offload.deviceMemory'],
    [{ tier: 'disk', hostMemory: 10 }, 'offload.hostMemory'],
    [{ tier: 'host', dir: '/tmp' }, 'offload.dir'],
  ];
  for (const [o, field] of bad) {
    try {
      weightOffload(o as never);
      assert.unreachable(field);
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, field);
    }
  }
  assert.is(weightOffload({ tier: 'disk', prefetch: 3 }).name, 'offload(disk, prefetch 3)');
});

test.run();
