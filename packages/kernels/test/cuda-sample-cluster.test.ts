// How many blocks (a thread-block cluster) share a sampled row, and the launch checks that keep a cluster
// launch well formed. The kernel itself is checked against core's TokenFilter on a GPU (gpu-check's
// conformance: widths of 1, 2 and 8 blocks).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError } from '@zinfer/core';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';
import { SAMPLE_MIN_SLICE, sampleClusterBlocks } from '../src/cuda/sample-launch.js';

const H200 = { maxClusterBlocks: 8, multiprocessors: 132 };

test('auto: a block per SAMPLE_MIN_SLICE ids, at most 8, no more blocks than SMs over all rows, a power of two', () => {
  const pick = (width: number, rows: number, gpu = H200) => sampleClusterBlocks(width, rows, gpu, 'auto');
  assert.is(pick(7, 1), 1);
  assert.is(pick(SAMPLE_MIN_SLICE, 1), 1);
  assert.is(pick(SAMPLE_MIN_SLICE + 1, 1), 2);
  assert.is(pick(3001, 1), 2);
  assert.is(pick(32000, 1), 8);
  assert.is(pick(151936, 1), 8);
  assert.is(pick(32000, 16), 8); // 128 blocks
  assert.is(pick(32000, 17), 4, 'a power of two: 7 would fit 119 blocks');
  assert.is(pick(5000, 1), 2, '3 slices round down to 2');
  assert.is(pick(32000, 64), 2);
  assert.is(pick(32000, 132), 1);
  assert.is(pick(32000, 1000), 1, 'more rows than SMs: still one block a row');
  assert.is(pick(32000, 1, { maxClusterBlocks: 1, multiprocessors: 108 }), 1, 'no clusters before sm_90');
});

test('a fixed ZINFER_SAMPLE_CLUSTER is capped by what the GPU takes', () => {
  assert.is(sampleClusterBlocks(7, 64, H200, '8'), 8);
  assert.is(sampleClusterBlocks(32000, 1, H200, '1'), 1);
  assert.is(sampleClusterBlocks(32000, 1, { maxClusterBlocks: 1, multiprocessors: 108 }, '4'), 1);
});

test('a cluster launch: grid.x a multiple of the cluster, 1 to the GPU\'s limit, else a BackendError naming the kernel', () => {
  const gpu = new RecordingGpu();
  const args = [0n, 0n, 0n, 32000, 0n, 0n, 0n, 0n];
  gpu.launch('sample_f32', { x: 16 }, 1024, args, 0, 8);
  assert.equal(gpu.launches.at(-1)!.cluster, 8);
  gpu.launch('sample_f32', { x: 3 }, 1024, args);
  assert.equal(gpu.launches.at(-1)!.cluster, 1, 'no cluster: 1');
  const refused = (x: number, cluster: number, why: RegExp) => {
    try {
      gpu.launch('sample_f32', { x }, 1024, args, 0, cluster);
    } catch (e) {
      assert.instance(e, BackendError);
      assert.match((e as Error).message, /sample_f32/);
      assert.match((e as Error).message, why);
      return;
    }
    assert.unreachable(`cluster ${cluster} over grid.x ${x} was launched`);
  };
  refused(12, 8, /grid.x 12 is not a multiple of the cluster's 8 blocks/);
  refused(18, 9, /cluster of 9 blocks; this GPU takes 1 to 8/);
  refused(4, 0, /cluster of 0 blocks/);
  refused(4, 1.5, /cluster of 1.5 blocks/);
});

test.run();
