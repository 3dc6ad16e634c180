// Copies of a micro-batch placed ahead that then does not run as announced (an unannounced batch over the
// same blocks, or a failed step before it) still have to complete before any step uses those blocks, and
// before dispose frees the host store; a failed copy leaves blocks that the residency map counts as loaded
// without their KV, so later steps fail instead of reading them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { KvBlockTransfer, Program, StepBatch } from '@zinfer/core';
import { OffloadedKvProgram } from '../src/kv-offload/offloaded-kv-program.js';

const BLOCK = 4;
const tick = () => new Promise<void>((r) => setImmediate(r));

/** A device whose copies take a few turns of the event loop; it records what a GPU would get wrong. */
class SlowDevice implements Program {
  readonly busy = new Set<number>();
  readonly faults: string[] = [];
  copies = 0;
  failLoads = false;
  failRun = false;
  freed = false;

  async run(batch: StepBatch): Promise<Float32Array> {
    for (const s of batch.sequences) for (const d of s.blockTable) if (this.busy.has(d)) this.faults.push(`step used device block ${d} while a copy into it was in flight`);
    if (this.failRun) {
      this.failRun = false;
      throw new Error('step failed');
    }
    await tick();
    return new Float32Array(0);
  }

  async dispose(): Promise<void> {}

  transfer(): KvBlockTransfer {
    const copy = async (device: Int32Array, load: boolean) => {
      this.copies++;
      device.forEach((d) => this.busy.add(d));
      for (let i = 0; i < 3; i++) await tick();
      device.forEach((d) => this.busy.delete(d));
      if (this.freed) this.faults.push('a copy completed after the host store was freed');
      if (load && this.failLoads) throw new Error('copy failed');
    };
    return {
      blockBytes: 4,
      allocHost: (blocks) => new ArrayBuffer(blocks * 4),
      freeHost: () => {
        this.freed = true;
      },
      save: (device) => copy(device, false),
      load: (_host, _store, device) => copy(device, true),
    };
  }
}

/** One sequence over `blocks` (BLOCK tokens each), writing the last token of each (so every block is written). */
function step(blocks: number[]): StepBatch {
  const n = blocks.length;
  return {
    tokenIds: new Int32Array(n), positions: Int32Array.from(blocks, (_, i) => i * BLOCK + BLOCK - 1), slots: Int32Array.from(blocks, (b) => b * BLOCK + BLOCK - 1),
    sequences: [{ queryStart: 0, queryLength: n, contextLength: n * BLOCK, blockTable: Int32Array.from(blocks) }], selectedRows: Int32Array.of(n - 1),
  };
}

/** A program of 4 device blocks whose blocks 0 and 1 were written and then saved to the host store. */
async function withSavedBlocks(): Promise<{ fake: SlowDevice; program: OffloadedKvProgram }> {
  const fake = new SlowDevice();
  const program = new OffloadedKvProgram(fake, fake.transfer(), 8, 4, BLOCK);
  await program.run(step([0, 1]));
  await program.run(step([2, 3]));
  await program.run(step([4, 5])); // evicts (saves) 0 and 1
  assert.ok(program.stats.saves >= 2, 'blocks 0 and 1 went to the host store');
  return { fake, program };
}

test('a batch over blocks whose loads were issued for another (announced) batch waits for those loads', async () => {
  const { fake, program } = await withSavedBlocks();
  const announced = step([0, 1]);
  program.prepare(announced); // their loads are now in flight
  await program.run({ ...announced }); // the same blocks, another batch object
  assert.equal(fake.faults, []);
});

test('after a failed step, the next one waits for the loads issued for the batch that never ran', async () => {
  const { fake, program } = await withSavedBlocks();
  const [a, b] = [step([4]), step([0, 1])]; // a's block is resident: a runs at once
  program.prepare(a);
  program.prepare(b); // placed while a runs: loads of 0 and 1 in flight
  fake.failRun = true;
  await program.run(a).then(() => assert.unreachable('the step fails'), () => {});
  await program.run(step([0, 1]));
  assert.equal(fake.faults, []);
});

test('dispose waits for copies still in flight before it frees the host store', async () => {
  const { fake, program } = await withSavedBlocks();
  const [a, b] = [step([4]), step([0, 1])];
  program.prepare(a);
  program.prepare(b);
  fake.failRun = true;
  await program.run(a).catch(() => {});
  await program.dispose();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(fake.faults, []);
});

test('a failed load fails the steps after it (the blocks it should have filled are not there)', async () => {
  const { fake, program } = await withSavedBlocks();
  fake.failLoads = true;
  const b = step([0, 1]);
  program.prepare(b);
  await program.run(b).then(() => assert.unreachable('the copy failed'), (e: Error) => assert.match(e.message, /copy failed/));
  fake.failLoads = false;
  await program.run(step([0, 1])).then(() => assert.unreachable('its blocks were never loaded'), (e: Error) => assert.match(e.message, /KV-cache block copy failed/));
});

test.run();
