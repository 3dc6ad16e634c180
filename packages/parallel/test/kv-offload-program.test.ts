// The offloaded program against a fake device: every block holds a version (bumped by each step that
// writes it), copies take a turn of the event loop, and the fake checks what a GPU would need: a step
// reads every block's latest version, never a block whose copy is still in flight, and no copy touches a
// block of the running step. Random steps over more blocks than the device holds, announced ahead as
// worker ranks see them; the next micro-batch's copies are issued while one runs (double buffering),
// and without room for two the same steps still come out right.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rng, type KvBlockTransfer, type Program, type StepBatch } from '@zinfer/core';
import { OffloadedKvProgram } from '../src/kv-offload/offloaded-kv-program.js';

const BLOCK = 4;
const tick = () => new Promise<void>((r) => setImmediate(r));

/** A device cache of versions and a program whose steps check and bump them. */
class FakeDevice implements Program {
  readonly device: Int32Array;
  /** Latest version of each engine block (0: never written). */
  readonly truth: Int32Array;
  /** Device blocks with a copy in flight, and those the running step uses. */
  readonly busy = new Set<number>();
  running = new Set<number>();
  /** Steps and copies in the order they were issued, with their device blocks. */
  readonly log: { what: 'run' | 'done' | 'save' | 'load'; blocks: number[] }[] = [];

  constructor(deviceBlocks: number, hostBlocks: number) {
    this.device = new Int32Array(deviceBlocks).fill(-1);
    this.truth = new Int32Array(hostBlocks);
  }

  /** The engine's batches in run order (the test's own record, to know which engine block a device block stands for). */
  readonly expected: StepBatch[] = [];

  async run(batch: StepBatch): Promise<Float32Array> {
    const engine = this.expected.shift()!;
    const engineOf = new Map<number, number>();
    engine.sequences.forEach((s, i) => batch.sequences[i].blockTable.forEach((d, j) => engineOf.set(d, s.blockTable[j])));
    const used = new Set(engineOf.keys());
    for (const d of used) assert.not.ok(this.busy.has(d), `step reads device block ${d} while a copy into it is in flight`);
    this.running = used;
    this.log.push({ what: 'run', blocks: [...used] });
    for (const d of used) {
      const e = engineOf.get(d)!;
      if (this.truth[e] > 0) assert.is(this.device[d], this.truth[e], `device block ${d} holds engine block ${e}'s latest version`);
    }
    await tick(); // the step computes: announcements and copies of other blocks come in meanwhile
    const written = new Set(Array.from(batch.slots, (s) => Math.floor(s / BLOCK)));
    for (const d of written) this.device[d] = this.truth[engineOf.get(d)!] += 1;
    this.log.push({ what: 'done', blocks: [...used] });
    this.running = new Set();
    return new Float32Array(0);
  }

  /** The same step, its output dropped (a rank nobody reads). */
  async runWithoutOutput(batch: StepBatch): Promise<void> {
    this.quietRuns++;
    await this.run(batch);
  }

  quietRuns = 0;

  async dispose(): Promise<void> {}

  transfer(): KvBlockTransfer {
    const copy = async (what: 'save' | 'load', device: Int32Array, move: (d: number, i: number, host: Int32Array) => void, store: ArrayBuffer) => {
      const host = new Int32Array(store);
      for (const d of device) assert.not.ok(this.running.has(d), `${what} of device block ${d} while the running step uses it`);
      device.forEach((d) => this.busy.add(d));
      this.log.push({ what, blocks: Array.from(device) });
      await tick();
      device.forEach((d, i) => move(d, i, host));
      device.forEach((d) => this.busy.delete(d));
    };
    return {
      blockBytes: 4,
      allocHost: (blocks) => new ArrayBuffer(blocks * 4),
      freeHost: () => {},
      save: (device, store, hostBlocks) => copy('save', device, (d, i, host) => (host[hostBlocks[i]] = this.device[d]), store),
      load: (hostBlocks, store, device) => copy('load', device, (d, i, host) => (this.device[d] = host[hostBlocks[i]]), store),
    };
  }
}

/** Sequences over distinct engine blocks, stepped a few tokens at a time; each step's micro-batches. */
function randomSteps(rng: Rng, hostBlocks: number, steps: number): StepBatch[][] {
  const pool = Array.from({ length: hostBlocks }, (_, i) => i).sort(() => rng.next() - 0.5);
  const seqs = Array.from({ length: 6 }, () => ({ table: pool.splice(0, 4), context: 0 }));
  const out: StepBatch[][] = [];
  for (let s = 0; s < steps; s++) {
    const micro: StepBatch[] = [];
    for (const group of [seqs.slice(0, 3), seqs.slice(3)]) {
      const batch: StepBatch = { tokenIds: new Int32Array(0), positions: new Int32Array(0), slots: new Int32Array(0), sequences: [], selectedRows: new Int32Array(0) };
      const slots: number[] = [];
      const sequences = [];
      for (const q of group) {
        if (q.context >= 15 || rng.next() < 0.3) continue;
        const n = 1 + Math.floor(rng.next() * 2);
        for (let p = q.context; p < q.context + n; p++) slots.push(q.table[Math.floor(p / BLOCK)] * BLOCK + (p % BLOCK));
        sequences.push({ queryStart: slots.length - n, queryLength: n, contextLength: q.context + n, blockTable: Int32Array.from(q.table) });
        q.context += n;
      }
      if (!sequences.length) continue;
      micro.push({ ...batch, tokenIds: new Int32Array(slots.length), positions: new Int32Array(slots.length), slots: Int32Array.from(slots), sequences });
    }
    out.push(micro);
  }
  return out;
}

/** Whether some step's loads were issued while the step before it was still running (after the one before that was done). */
function overlapped(log: FakeDevice['log']): boolean {
  const at = (what: 'run' | 'done') => log.flatMap((e, i) => (e.what === what ? [i] : []));
  const [runs, dones] = [at('run'), at('done')];
  return runs.some((r, k) => {
    if (k < 2) return false;
    const mine = new Set(log[r].blocks);
    const before = new Set(log[runs[k - 1]].blocks);
    return log.slice(dones[k - 2], dones[k - 1]).some((e) => e.what === 'load' && e.blocks.every((d) => mine.has(d) && !before.has(d)));
  });
}

async function drive(deviceBlocks: number, seed: number, quiet = false): Promise<{ fake: FakeDevice; program: OffloadedKvProgram }> {
  const hostBlocks = 24;
  const fake = new FakeDevice(deviceBlocks, hostBlocks);
  const program = new OffloadedKvProgram(fake, fake.transfer(), hostBlocks, deviceBlocks, BLOCK);
  for (const micro of randomSteps(Rng.fromSeed(seed), hostBlocks, 40)) {
    if (!micro.length) continue;
    fake.expected.push(...micro);
    // As a worker rank: the first micro-batch's message, then the next one arrives while it runs.
    const run = (b: StepBatch) => (quiet ? program.runWithoutOutput!(b) : program.run(b));
    program.prepare(micro[0]);
    const first = run(micro[0]);
    if (micro[1]) program.prepare(micro[1]);
    await first;
    if (micro[1]) await run(micro[1]);
  }
  return { fake, program };
}

test('double buffering: every step reads the latest KV of its blocks, no copy touches a running block, the next loads while one runs', async () => {
  for (const seed of [1, 2, 3]) {
    const { fake, program } = await drive(16, seed); // room for two micro-batches (at most 12 blocks each... mostly)
    assert.ok(program.stats.saves > 0 && program.stats.loads > 0, `seed ${seed}: blocks moved (${JSON.stringify(program.stats)})`);
    assert.ok(program.stats.prepared > 0, `seed ${seed}: some micro-batches were placed while another ran`);
    assert.ok(overlapped(fake.log), `seed ${seed}: some step's loads were issued before the step before it was done`);
  }
});

test('runWithoutOutput (a rank nobody reads) places blocks and double-buffers as run() does', async () => {
  const { fake, program } = await drive(16, 6, true);
  assert.ok(fake.quietRuns > 0 && fake.expected.length === 0, 'every step ran through the inner runWithoutOutput');
  assert.ok(program.stats.loads > 0 && overlapped(fake.log));
  const inner = new FakeDevice(4, 8);
  const plain = new OffloadedKvProgram({ run: (b: StepBatch) => inner.run(b), dispose: async () => {} }, inner.transfer(), 8, 4, BLOCK);
  assert.is(plain.runWithoutOutput, undefined, 'absent when the inner program lacks it');
});

test('a device cache for one micro-batch only: no overlap, the same correct steps', async () => {
  for (const seed of [4, 5]) {
    const { program } = await drive(12, seed);
    assert.ok(program.stats.loads > 0, `seed ${seed}: blocks came back`);
  }
});

test.run();
