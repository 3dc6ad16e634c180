// Each tier through the core OffloadTier contract: put, fetch back bit-identical, release; the device
// tier counts its budget.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CapacityError, Rng, type OffloadTier } from '@zinfer/core';
import { randomTensor } from '@zinfer/core/testing';
import { DeviceTier, DiskFile, DiskTier, HostTier } from '../src/index.js';

const rng = Rng.fromSeed(5);
const weights = [randomTensor(rng, 'f32', [3, 5]), randomTensor(rng, 'bf16', [7]), randomTensor(rng, 'f16', [2, 9])];

async function roundTrip(tier: OffloadTier, seal?: () => Promise<void>): Promise<void> {
  for (const [i, t] of weights.entries()) await tier.put(`w${i}`, t);
  await seal?.();
  for (const [i, t] of weights.entries()) {
    const got = await tier.fetch(`w${i}`);
    assert.is(got.dtype, t.dtype);
    assert.equal(got.shape, t.shape);
    assert.equal(Array.from(got.data), Array.from(t.data), `${tier.name} w${i}`);
  }
  await tier.release('w0');
  let gone = false;
  await tier.fetch('w0').catch(() => (gone = true));
  assert.ok(gone, `${tier.name}: a released weight is gone`);
}

test('device, host and disk tiers give back what was put', async () => {
  await roundTrip(new DeviceTier(1e6));
  await roundTrip(new HostTier((n) => new ArrayBuffer(n), 1e5));
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-tier-test-'));
  try {
    const file = await DiskFile.create(join(dir, 'w.bin'));
    await roundTrip(new DiskTier(file, (n) => new ArrayBuffer(n)), () => file.seal(true));
    assert.is(file.size % 4096, 0, 'regions are 4096-aligned');
    await file.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the device tier refuses past its budget, naming offload.deviceMemory', async () => {
  const tier = new DeviceTier(80); // 60 bytes fit, 60 + 36 do not
  await tier.put('a', weights[0]);
  try {
    await tier.put('b', weights[2]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, CapacityError);
    assert.is((e as CapacityError).info.field, 'offload.deviceMemory');
  }
});

test.run();
