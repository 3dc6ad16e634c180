// A stand-in KernelBackend for engine tests: its "model" predicts token (t + 1) mod vocab after t, so
// greedy output is known exactly, and it records every StepBatch so tests can check the scheduling.
import { chainArgmaxSteps, chainSampleSteps, HostRowSampler, type CompileOptions, type Graph, type KernelBackend, type Program, type RunOptions, type SampleRow, type StepBatch, type WeightSource } from '../../src/index.js';

export interface CountingBackend extends KernelBackend {
  batches: StepBatch[];
  options: CompileOptions | null;
  /** Token id whose presence in a step makes run() reject (to test failure isolation). */
  poison: number | null;
  /** Steps answered by runArgmax (only when created with { argmax: true }). */
  argmaxSteps: number;
  /** Rows of the steps answered by runSample (only when created with { sample: true }), one array a step. */
  sampleSteps: SampleRow[][];
  /** Steps of each runArgmaxSteps call (only when created with { chain: true }). */
  chainCalls: number[];
  /** Steps of each runSampleSteps call (only when created with { chain: true, sample: true }). */
  sampleChainCalls: number[];
  /** Most run() calls in flight at once, and KV blocks that two calls in flight shared (must stay empty). */
  maxInFlight: number;
  /** RunOptions.concurrent of each run() call (undefined when not given). */
  concurrent: (number | undefined)[];
  sharedBlocks: number[];
}

export interface CountingOptions {
  argmax?: boolean;
  /** Program.runSample: run()'s logits picked on the host, as a device would pick them. */
  sample?: boolean;
  /** Program.runArgmaxSteps (core's host chain over runArgmax; implies argmax). */
  chain?: boolean;
  /** Program.concurrentSteps (a pipeline's stages), and how long each run() takes then. */
  concurrentSteps?: number;
  delayMs?: number;
}

export function countingBackend(opts: CountingOptions = {}): CountingBackend {
  const self: CountingBackend = {
    name: 'counting',
    contractVersion: 1,
    batches: [],
    options: null,
    poison: null,
    argmaxSteps: 0,
    sampleSteps: [],
    chainCalls: [],
    sampleChainCalls: [],
    maxInFlight: 0,
    concurrent: [],
    sharedBlocks: [],
    probe: async () => ({ device: 'cpu', description: 'test', memoryBytes: 1 << 30 }),
    supports: () => true,
    kvBytesPerBlock: (g: Graph, bs: number) => 2 * g.kv.layers * bs * g.kv.kvHeads * g.kv.headDim * 4,
    async compile(graph: Graph, _w: WeightSource, options: CompileOptions): Promise<Program> {
      self.options = options;
      const vocab = graph.weights.get(graph.nodes[graph.nodes.length - 1].op === 'linear' ? (graph.nodes[graph.nodes.length - 1].attrs as { weight: string }).weight : '')!.shape[0];
      let disposed = false;
      let inFlight = 0;
      const busyBlocks = new Set<number>();
      // A step in flight for delayMs: counts overlap and any KV block two steps in flight both hold.
      const hold = async (batch: StepBatch) => {
        if (!opts.delayMs) return;
        const blocks = batch.sequences.flatMap((q) => [...q.blockTable]);
        for (const b of blocks) if (busyBlocks.has(b)) self.sharedBlocks.push(b);
        for (const b of blocks) busyBlocks.add(b);
        self.maxInFlight = Math.max(self.maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, opts.delayMs));
        inFlight--;
        for (const b of blocks) busyBlocks.delete(b);
      };
      const sampler = new HostRowSampler();
      const program: Program = {
        ...(opts.concurrentSteps ? { concurrentSteps: opts.concurrentSteps } : {}),
        async run(batch: StepBatch, options?: RunOptions): Promise<Float32Array> {
          if (disposed) throw new Error('disposed');
          self.batches.push(batch);
          self.concurrent.push(options?.concurrent);
          await hold(batch);
          if (self.poison !== null && batch.tokenIds.includes(self.poison)) throw new Error('poisoned step');
          const out = new Float32Array(batch.selectedRows.length * vocab);
          batch.selectedRows.forEach((r, i) => {
            for (let t = 0; t < vocab; t++) out[i * vocab + t] = -Math.abs(t - ((batch.tokenIds[r] + 1) % vocab)) * 0.5;
          });
          return out;
        },
        async dispose() {
          disposed = true;
        },
        ...(opts.chain
          ? {
              runArgmaxSteps(batch: StepBatch, steps: number): Promise<Int32Array> {
                self.chainCalls.push(steps);
                return chainArgmaxSteps(program, batch, steps, options.kvCache.blockSize);
              },
            }
          : {}),
        ...(opts.chain && opts.sample
          ? {
              runSampleSteps(batch: StepBatch, rows: readonly (readonly SampleRow[])[]): Promise<Int32Array> {
                self.sampleChainCalls.push(rows.length);
                return chainSampleSteps(program, batch, rows, options.kvCache.blockSize);
              },
            }
          : {}),
        ...(opts.argmax || opts.chain
          ? {
              async runArgmax(batch: StepBatch): Promise<Int32Array> {
                self.batches.push(batch);
                self.argmaxSteps++;
                return Int32Array.from(batch.selectedRows, (r) => (batch.tokenIds[r] + 1) % vocab);
              },
            }
          : {}),
        ...(opts.sample
          ? {
              async runSample(batch: StepBatch, rows: readonly SampleRow[]): Promise<Int32Array> {
                self.sampleSteps.push([...rows]);
                return sampler.pick(await program.run(batch), rows, vocab);
              },
            }
          : {}),
      };
      return program;
    },
  };
  return self;
}
