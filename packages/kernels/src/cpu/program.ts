// A compiled graph on the cpu backend: interprets the rewritten node list like the reference program,
// but every op is a wasm kernel over the shared memory (node-kernels.ts), split over the thread pool when
// it is big enough to repay waking the other threads; collectives go through the communicator. With a
// weight stream, each group is acquired and copied into its slot around the nodes (stream-run.ts).
import { BackendError, checkSampleRows, type KvBlockTransfer, type Program, type SampleRow, type StepBatch } from '@zinfer/core';
import { argmaxRows } from './argmax-rows.js';
import { validateBatch } from '../reference/batch.js';
import type { KvCache } from '../reference/kv-cache.js';
import { hostKvBlocks } from '../reference/kv-block-transfer.js';
import type { CompiledGraph, CpuMemory } from './compile.js';
import type { CpuNode } from './fuse.js';
import { kernelIds, nodeWork, NodeRunner, type Step } from './node-kernels.js';
import { ArenaPlanner } from './plan.js';
import { PoolRowSampler } from './sample-rows.js';
import { rotaryKeys, writeStepData } from './step-data.js';
import { StreamRun } from './stream-run.js';
import type { ThreadPool } from './thread-pool.js';

export class CpuProgram implements Program {
  private state: { c: CompiledGraph; pool: ThreadPool; nodes: NodeRunner } | null;
  /** Heap bytes by use: resident weights, stream slots, KV cache (the activations of a step come on top). */
  readonly memory: CpuMemory;
  private readonly planner: ArenaPlanner;
  private readonly rotary: Map<number, string>;
  /** What validateBatch reads of a KV cache (the reference's class, without its arrays). */
  private readonly cacheShape: KvCache | null;
  private running = false;
  private readonly sampler: PoolRowSampler;
  /** The weight stream's schedule and copies (a program compiled with CompileOptions.stream). */
  private readonly stream: StreamRun | null;
  /**
   * Set to a Map to collect wall time per kind of node (op, and for linears the weights' names without
   * their layer prefix) over the steps that follow, for profiling a step; null (the default) times nothing.
   */
  profile: Map<string, { ms: number; calls: number }> | null = null;

  constructor(c: CompiledGraph, pool: ThreadPool, private readonly minParallelWork: number) {
    const nodes = new NodeRunner(c, pool, kernelIds(pool), minParallelWork);
    const stream = c.stream ? new StreamRun(c.stream, c.graph, c.weights, c.heap, pool) : null;
    nodes.copies = stream?.copies ?? null;
    this.state = { c, pool, nodes };
    this.sampler = new PoolRowSampler(pool);
    this.stream = stream;
    this.memory = c.memory;
    this.planner = new ArenaPlanner(c.graph, c.nodes);
    this.rotary = rotaryKeys(c.nodes);
    this.cacheShape = c.kv ? { k: [], v: [], layout: c.graph.kv, spec: c.kvSpec, slots: c.kv.slots, width: c.kv.width } : null;
  }

  /** Bytes of weights the program holds: the resident ones, the stream's slots and its staging buffer. */
  get weightBytes(): number {
    return this.memory.residentWeights + this.memory.streamSlots + this.memory.streamStaging;
  }

  /** Streamed bytes copied into slots, and how many of them while the workers computed; null without a stream. */
  get streamCopies(): { bytes: number; overlappedBytes: number } | null {
    return this.stream ? { ...this.stream.copies.stats } : null;
  }

  /**
   * KV blocks to and from host memory (KV-cache offload): byte copies out of the heap's f32 cache. Absent
   * for a graph without attention (no cache).
   */
  get kvBlocks(): KvBlockTransfer | undefined {
    const state = this.live();
    const { kv, kvSpec, graph } = state.c;
    if (!kv) return undefined;
    const blockLayerBytes = kvSpec.blockSize * kv.width * 4;
    return hostKvBlocks({
      layers: graph.kv.layers, numBlocks: kvSpec.numBlocks, blockLayerBytes,
      layer: (l, kind) => {
        this.checkLive(state);
        const at = (kind === 0 ? kv.k : kv.v)[l];
        return state.c.heap.u8.subarray(at, at + kv.slots * kv.width * 4);
      },
    });
  }

  async run(batch: StepBatch): Promise<Float32Array> {
    return this.execute(batch, (f32, at, count) => f32.slice(at, at + count));
  }

  /** Greedy rows (the engine asks when every row of a step is): token ids, no [rows, vocab] copy. */
  async runArgmax(batch: StepBatch): Promise<Int32Array> {
    return this.execute(batch, (f32, at, count, width) => argmaxRows(f32, at, count / width, width));
  }

  /** Sampled rows (the engine asks when no row needs its logits): each row's pick, read in place, the rows split over the pool. */
  async runSample(batch: StepBatch, rows: readonly SampleRow[]): Promise<Int32Array> {
    checkSampleRows(batch, rows);
    const { c } = this.live();
    return this.execute(batch, (_f32, at, _count, width, free) => this.sampler.pick(c.heap, c.args, at, rows, width, free));
  }

  /**
   * Runs the step; `read` takes the output in place: float index `at`, `count` floats, rows of `width`;
   * the heap is free from byte `free` on (the step's values end there).
   */
  private async execute<T>(batch: StepBatch, read: (f32: Float32Array, at: number, count: number, width: number, free: number) => T): Promise<T> {
    const state = this.live();
    if (this.running) throw new BackendError('cpu program is already running a step; await the previous run() first');
    validateBatch(batch, this.cacheShape);
    this.running = true;
    try {
      const { c, pool, nodes } = state;
      const stream = this.stream;
      const rows = batch.tokenIds.length;
      const selected = batch.selectedRows.length;
      const ctx = batch.sequences.reduce((m, s) => Math.max(m, s.contextLength), 0);
      const work = c.nodes.map((n) => nodeWork(c, n, rows, selected, ctx));
      // Workers start on the first step that has a node worth splitting.
      if (pool.threads > 1 && !pool.parallel && work.some((w) => w >= this.minParallelWork)) await pool.start();
      this.checkLive(state);
      const plan = this.planner.plan(rows, selected);
      const base = c.heap.end;
      const data = writeStepData(c.heap, base, c.graph, c.nodes, this.rotary, batch);
      const valuesAt = base + data.bytes;
      c.heap.ensure(valuesAt + plan.bytes, `activations of a ${rows}-row step`);
      const step: Step = { batch, rows, selected, data, at: Float64Array.from(plan.offsets, (o) => (o < 0 ? -1 : valuesAt + o)) };
      if (stream) await this.runStreamed(state, stream, step, work);
      else {
        for (const [i, node] of c.nodes.entries()) {
          const t0 = this.profile ? performance.now() : 0;
          if (isCommunication(node)) await this.communicate(state, node, step);
          else nodes.run(node, i, step, work[i]);
          if (this.profile) record(this.profile, node, performance.now() - t0);
          this.checkLive(state);
        }
      }
      const out = c.graph.values[c.graph.output];
      const p = step.at[c.graph.output] >>> 2;
      return read(c.heap.f32, p, (out.rows === 'selected' ? selected : rows) * out.width, out.width, valuesAt + plan.bytes);
    } finally {
      this.running = false;
    }
  }

  /** The node loop of a streaming program: groups loaded before their first node, done after their last. */
  private async runStreamed(state: NonNullable<CpuProgram['state']>, stream: StreamRun, step: Step, work: readonly number[]): Promise<void> {
    const { c, nodes } = state;
    stream.begin();
    try {
      for (const [i, node] of c.nodes.entries()) {
        const load = stream.before(i);
        if (load) await load;
        this.checkLive(state);
        if (isCommunication(node)) await this.communicate(state, node, step);
        else nodes.run(node, i, step, work[i]);
        stream.after(i);
        this.checkLive(state);
      }
      stream.end();
    } catch (e) {
      await stream.abort();
      throw e;
    }
  }

  async dispose(): Promise<void> {
    const state = this.state;
    this.state = null; // the heap (weights, KV cache) goes to the garbage collector with the pool
    if (state) await state.pool.close();
  }

  private live(): NonNullable<CpuProgram['state']> {
    if (!this.state) throw new BackendError('cpu program was disposed; compile the graph again to run it');
    return this.state;
  }

  private checkLive(state: NonNullable<CpuProgram['state']>): void {
    if (this.state !== state) throw new BackendError('cpu program was disposed during run(); compile the graph again to run it');
  }

  /**
   * Collectives (communicator) and pipeline transfers (pipeline), on copies of the values: a
   * communicator may keep or post its buffers, and views of the shared wasm memory are better not
   * handed out. Every rank reaches the same node in the same step, so the calls pair up.
   */
  private async communicate({ c, nodes }: NonNullable<CpuProgram['state']>, node: CommunicationNode, s: Step): Promise<void> {
    const dst = s.at[node.output] >>> 2;
    const rows = nodes.rowsOf(node.output, s);
    if (node.op === 'recv') {
      const out = new Float32Array(rows * node.attrs.width); // [rows, width]
      await c.pipeline!.recv(out, node.attrs.peer); // compile refuses send/recv graphs without a pipeline
      c.heap.f32.set(out, dst);
      return;
    }
    const width = c.graph.values[node.inputs.x].width;
    const src = s.at[node.inputs.x] >>> 2;
    const x = c.heap.f32.slice(src, src + nodes.rowsOf(node.inputs.x, s) * width);
    if (node.op === 'send') {
      await c.pipeline!.send(x, node.attrs.peer);
      c.heap.f32.set(x, dst); // the output is x itself
      return;
    }
    const comm = c.communicator!; // compile refuses collective graphs without one
    if (node.op === 'allReduce') {
      await comm.allReduce(x);
      c.heap.f32.set(x, dst);
      return;
    }
    const ranks = node.attrs.ranks;
    const flat = new Float32Array(x.length * ranks); // [ranks, rows, width] as the communicator gathers it
    await comm.allGather(x, flat);
    const f32 = c.heap.f32;
    for (let r = 0; r < ranks; r++) {
      for (let i = 0; i < rows; i++) f32.set(flat.subarray((r * rows + i) * width, (r * rows + i + 1) * width), dst + (i * ranks + r) * width);
    }
  }
}

/** Adds one node's time to a profile, keyed by op (linears: by weight names, layer index dropped). */
function record(profile: Map<string, { ms: number; calls: number }>, node: CpuNode, ms: number): void {
  const key = node.op === 'linearGroup' ? `linear ${node.parts.map((p) => p.weight.replace(/^.*layers\.\d+\./, '')).join('+')}` : node.op;
  const e = profile.get(key) ?? { ms: 0, calls: 0 };
  e.ms += ms;
  e.calls += 1;
  profile.set(key, e);
}

type CommunicationNode = Extract<CpuNode, { op: 'allReduce' | 'allGather' | 'send' | 'recv' }>;

function isCommunication(node: CpuNode): node is CommunicationNode {
  return node.op === 'allReduce' || node.op === 'allGather' || node.op === 'send' || node.op === 'recv';
}
