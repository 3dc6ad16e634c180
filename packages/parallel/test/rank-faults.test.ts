// Faults of worker ranks and the NCCL plumbing that needs no GPU: a hung rank fails the step within the
// timeout with an error naming it; NCCL library discovery and its errors; the shared communicator cells
// that let exactly one thread free a communicator; device placement of NCCL ranks.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, ConfigError, loadModel, type StepBatch } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { CommCell, createCommCells, findNccl, launchPlan, tensorParallel } from '../src/index.js';
import { firstDeviceOf, rankFactory } from '../src/launch/nccl-grid.js';
import { hangBackend } from './workers/hang-backend.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const KV = { numBlocks: 4, blockSize: 16 };

function prefill(ids: number[]): StepBatch {
  const positions = Int32Array.from(ids, (_, i) => i);
  return {
    tokenIds: Int32Array.from(ids), positions, slots: positions.slice(),
    sequences: [{ queryStart: 0, queryLength: ids.length, contextLength: ids.length, blockTable: Int32Array.of(0, 1, 2, 3) }],
    selectedRows: Int32Array.of(ids.length - 1),
  };
}

test('a rank that hangs fails the step within the timeout, naming it; the program stays failed', async () => {
  const dir = join(FIXTURES, 'llama2');
  const model = await loadModel(dir);
  const strategy = tensorParallel({ size: 2, timeoutMs: 1500 });
  const backend = hangBackend({ hangRank: 1, hangToken: 7 });
  const program = await strategy.launch({ plan: strategy.plan(model.graph, []), backend, model: { dir }, weights: model.weights, kvCache: KV });
  assert.is((await program.run(prefill([1, 2, 3]))).length > 0, true, 'a healthy step runs');
  const t0 = Date.now();
  try {
    await program.run(prefill([7, 8]));
    assert.unreachable('expected the hung step to fail');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, /ranks? (0, )?1 did not finish a step within 1500 ms/);
  }
  assert.ok(Date.now() - t0 < 4000, `reported within seconds (${Date.now() - t0} ms)`);
  try {
    await program.run(prefill([1, 2]));
    assert.unreachable('expected the broken program to refuse');
  } catch (e) {
    assert.match((e as Error).message, 'did not finish a step');
  }
  await program.dispose();
  model.weights.close();
});

test('ranks that need a device each are refused inline', async () => {
  const dir = join(FIXTURES, 'llama2');
  const model = await loadModel(dir);
  const backend = { ...referenceBackend(), deviceCollectives: 'nccl' as const };
  const plan = tensorParallel({ size: 2 }).plan(model.graph, []);
  try {
    await launchPlan({ plan, backend, model: { dir }, weights: model.weights, kvCache: KV }, { ranks: 'inline' });
    assert.unreachable('expected a refusal');
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.is((e as ConfigError).info.field, 'parallel.ranks');
  }
  model.weights.close();
});

test('NCCL discovery: ZINFER_NCCL_LIB as a file or a folder, LD_LIBRARY_PATH, and an error that lists the paths tried', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-nccl-'));
  const lib = join(dir, 'libnccl.so.2');
  writeFileSync(lib, '');
  assert.is(findNccl({ env: { ZINFER_NCCL_LIB: lib }, system: false }), lib);
  assert.is(findNccl({ env: { ZINFER_NCCL_LIB: dir }, system: false }), lib);
  assert.is(findNccl({ env: { LD_LIBRARY_PATH: `/nonexistent:${dir}` }, system: false }), lib);
  try {
    findNccl({ env: { ZINFER_NCCL_LIB: join(dir, 'missing.so') }, system: false });
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.is((e as BackendError).info.field, 'ZINFER_NCCL_LIB');
  }
  try {
    findNccl({ env: { LD_LIBRARY_PATH: '/nonexistent' }, system: false });
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, 'ZINFER_NCCL_LIB');
    assert.match((e as Error).message, '/nonexistent/libnccl.so.2');
    assert.is((e as BackendError).info.file, 'libnccl.so.2');
  }
});

test('communicator cells: one thread frees a communicator, once; a cell ended before its rank joined makes the join abort', () => {
  const cells = createCommCells(2);
  const owner = new CommCell(cells, 0);
  const leader = new CommCell(cells, 0); // the same cell seen from another thread
  const freed: bigint[] = [];
  assert.ok(owner.publish(0xabcn));
  assert.ok(leader.live);
  assert.is(leader.handle, 0xabcn);
  leader.end((c) => freed.push(c));
  owner.end((c) => freed.push(c));
  assert.equal(freed, [0xabcn]);
  assert.not.ok(owner.live);
  const late = new CommCell(cells, 1);
  late.end(() => freed.push(-1n)); // the leader gave up while the rank was still joining
  assert.not.ok(late.publish(0xdefn), 'the joining rank learns it must abort its new communicator');
  assert.equal(freed, [0xabcn]);
});

test('NCCL ranks: rank r runs on device (options.device ?? 0) + r with the other options kept; non-object options are refused', () => {
  const factory = { module: '@zinfer/kernels/cuda', exportName: 'cudaBackend', options: { activations: 'f16', device: 2 } };
  assert.is(firstDeviceOf(factory), 2);
  assert.equal(rankFactory(factory, 3).options, { activations: 'f16', device: 3 });
  assert.is(firstDeviceOf({ module: 'm', exportName: 'e' }), 0);
  for (const options of ['x', { device: -1 }]) {
    try {
      firstDeviceOf({ module: 'm', exportName: 'e', options });
      assert.unreachable('expected a ConfigError');
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.match((e as ConfigError).info.field ?? '', 'backend.factory.options');
    }
  }
});

test.run();
