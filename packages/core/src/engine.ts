// createEngine: validates one config, loads the model, compiles its graph on the chosen backend, and
// runs generation steps over many sequences at once. Requests join and leave between steps.
//
// A program that overlaps steps (Program.concurrentSteps: a pipeline of that many stages) gets that many
// step lanes when the engine steps on its own: every sequence belongs to one lane, and each lane steps its
// own sequences as soon as its previous step is back, so a sequence's next token re-enters the pipeline at
// once while the other lanes' steps are still in it. A sequence in a running step is never reaped (its KV
// blocks stay its own) until that step is done.
import type { ModelSpec } from './architectures/index.js';
import type { OffloadPlacement, ParallelStrategy, Program } from './contracts.js';
import { validateEngineConfig, type EngineConfig } from './engine-config.js';
import { AbortError, BackendError, BusyError, CapacityError, ConfigError, RequestError, TokenizerError } from './errors.js';
import { ExpertLoadTotals } from './expert-load.js';
import { launchRanks, type RelaunchContext } from './expert-load-relaunch.js';
import { GenerationStream, type GenerationResult } from './generation-stream.js';
import { isChainableDecode } from './decode-chain.js';
import { BlockAllocator } from './kv-cache.js';
import { loadModel } from './model.js';
import { normalizeRequest, type GenerateRequest } from './request.js';
import { planStep, type StepPlan } from './scheduler.js';
import { GREEDY_ROW } from './sampling/index.js';
import { Sequence } from './sequence.js';
import { StepLoops } from './step-loops.js';
import { sizeCache } from './engine-sizing.js';
import type { TextTokenizer } from './tokenizer.js';

const DEFAULTS = { kvCacheBytes: 256 * 2 ** 20, blockSize: 16, maxBatchTokens: 512, maxSequences: 64, decodeSteps: 4 };

export interface StepReport {
  /** Tokens computed in the step (prompt and decode together); 0 when there was nothing to do. */
  tokens: number;
  sequences: number;
  finished: number;
  /** Decode steps the call ran: 1, or a chained run's length (limits.decodeSteps): each sequence got up to that many tokens. */
  steps: number;
}

export interface Engine {
  readonly spec: ModelSpec;
  readonly tokenizer: TextTokenizer | null;
  /** Longest prompt + generation this engine accepts. */
  readonly maxContext: number;
  readonly kvBlocks: { total: number; free: number; blockSize: number };
  /** Where the weights live and the fetch/compute timeline, when the config has `offload`. */
  readonly offload: OffloadPlacement | null;
  /** Requests in the running batch (holding KV blocks) and in the waiting queue (for metrics). */
  readonly sequences: { running: number; waiting: number };
  /** Queues a request; the engine's step loop (or your own step() calls) advances it. */
  generate(request: GenerateRequest): GenerationStream;
  /** Runs one step over every admitted sequence. */
  step(): Promise<StepReport>;
  /**
   * Tokens routed to each expert per MoE layer since the engine started (across relaunches), or null when
   * the backend keeps no routing statistics. Read between or during steps; it never delays a step.
   * (Optional so that stand-in engines need not implement it; createEngine's engines do.)
   */
  expertLoad?(): Promise<Float64Array[] | null>;
  /**
   * Restarts the ranks of a parallel engine under `parallel` (e.g. a re-planned expert placement), between
   * steps. Only while no request runs or waits (BusyError otherwise); requests sent meanwhile wait for it.
   */
  relaunch?(parallel: ParallelStrategy): Promise<void>;
  /** Finishes every pending request with 'abort' and frees the backend. */
  close(): Promise<void>;
}

export async function createEngine(config: EngineConfig): Promise<Engine> {
  const cfg = validateEngineConfig(config);
  const model = await loadModel(cfg.model, { dtype: cfg.dtype, onProgress: cfg.onLoadProgress });
  try {
    // A parallel strategy turns the model's graph into one graph per rank; the engine schedules as if
    // there were one device, and the strategy's program steps all ranks together.
    const plan = cfg.parallel?.plan(model.graph, Array.from({ length: cfg.parallel.ranks }, (_, rank) => ({ rank, backend: cfg.backend.name })));
    const graphs = plan ? plan.ranks.map((r) => r.graph) : [model.graph];
    for (const node of graphs.flatMap((g) => g.nodes)) {
      if (!cfg.backend.supports(node)) throw new BackendError(`backend ${cfg.backend.name} does not support op ${node.op}`, { expected: 'a backend that implements every op of the model' });
    }
    const limits = { ...DEFAULTS, ...cfg.limits };
    const maxContext = Math.min(limits.maxContext ?? model.spec.maxPositions, model.spec.maxPositions);
    const kvDtype = limits.kvCacheDtype ?? 'auto';
    if (kvDtype !== 'auto' && !cfg.backend.kvCacheDtypes?.includes(kvDtype)) {
      throw new ConfigError(`backend ${cfg.backend.name} has no ${kvDtype} KV cache`, { field: 'limits.kvCacheDtype', expected: ['auto', ...(cfg.backend.kvCacheDtypes ?? [])].join(' | '), found: kvDtype });
    }
    const perBlock = cfg.backend.kvBytesPerBlock(graphs[0], limits.blockSize, model.weights, kvDtype); // per device: a rank's share
    // Offload reads every weight once into its tier (or leaves it resident); the program then holds only
    // the resident ones and streams the rest in while it runs.
    // A strategy that takes offload (data parallelism) places the weights on each of its ranks instead.
    const rankOffload = plan && cfg.offload ? cfg.offload : undefined;
    const offload = cfg.offload && !rankOffload ? await cfg.offload.place({ graph: model.graph, weights: model.weights, backend: cfg.backend }) : null;
    try {
      const sized = await sizeCache({ ...limits, batchTokensSet: cfg.limits?.maxBatchTokens !== undefined }, {
        backend: cfg.backend, graph: graphs[0], weights: model.weights, maxContext, perBlock, deviceWeightBytes: offload?.deviceBytes,
      });
      const { numBlocks } = sized;
      const kvCache = { numBlocks, blockSize: limits.blockSize, ...(kvDtype !== 'auto' ? { dtype: kvDtype } : {}) };
      const program = plan
        ? await cfg.parallel!.launch({ plan, backend: cfg.backend, model: { dir: cfg.model, dtype: cfg.dtype }, weights: model.weights, kvCache, ...(rankOffload ? { offload: rankOffload } : {}) })
        : await cfg.backend.compile(model.graph, offload?.resident ?? model.weights, { kvCache, ...(offload?.stream ? { stream: offload.stream } : {}) });
      const relaunch = cfg.parallel ? { model: cfg.model, dtype: cfg.dtype, backend: cfg.backend, kvCache, parallel: cfg.parallel } : null;
      return new LocalEngine(model.spec, model.tokenizer, program, offload ?? program.offload ?? null, new BlockAllocator(numBlocks, limits.blockSize), maxContext, sized.maxBatchTokens, sized.maxSequences, limits.decodeSteps, cfg.autoStep ?? true, relaunch);
    } catch (e) {
      await offload?.close();
      throw e;
    }
  } finally {
    model.weights.close();
  }
}

class LocalEngine implements Engine {
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private nextId = 1;
  private busy: Promise<unknown> = Promise.resolve();
  /** The engine's own step loops, one a lane (close waits for their steps; relaunch refuses while any sequence runs). */
  private readonly loops = new StepLoops({
    lanes: () => this.lanes,
    hasWork: () => !this.closed && (this.waiting.length > 0 || this.running.length > 0),
    step: (k, lanes) => (lanes === 1 ? this.step() : this.laneStep(k)),
  });
  private closed = false;
  private readonly routed = new ExpertLoadTotals();

  constructor(
    readonly spec: ModelSpec,
    readonly tokenizer: TextTokenizer | null,
    private program: Program,
    readonly offload: OffloadPlacement | null,
    private readonly blocks: BlockAllocator,
    readonly maxContext: number,
    private readonly maxBatchTokens: number,
    private readonly maxSequences: number,
    /** Greedy decode steps a chained call may run (EngineLimits.decodeSteps). */
    private readonly decodeSteps: number,
    private readonly autoStep: boolean,
    private readonly launch: RelaunchContext | null,
  ) {}

  get kvBlocks() {
    return { total: this.blocks.numBlocks, free: this.blocks.free, blockSize: this.blocks.blockSize };
  }

  get sequences() {
    return { running: this.running.length, waiting: this.waiting.length };
  }

  generate(request: GenerateRequest): GenerationStream {
    if (this.closed) throw new AbortError('the engine is closed');
    const req = normalizeRequest(request);
    const prompt = this.promptIds(request);
    if (prompt.length === 0) throw new RequestError('the prompt is empty', { field: 'prompt', expected: 'at least one token', found: '0 tokens' });
    if (prompt.length >= this.maxContext) {
      throw new CapacityError('the prompt is longer than the context', { field: 'prompt', expected: `at most ${this.maxContext - 1} tokens`, found: `${prompt.length} tokens` });
    }
    const bad = prompt.find((t) => !Number.isSafeInteger(t) || t < 0 || t >= this.spec.vocabSize);
    if (bad !== undefined) throw new RequestError('a prompt token id is outside the vocabulary', { field: 'input_ids', expected: `ids in [0, ${this.spec.vocabSize})`, found: String(bad) });
    const maxNew = Math.min(req.maxTokens ?? Infinity, this.maxContext - prompt.length);
    const needed = this.blocks.blocksFor(prompt.length + maxNew);
    if (needed > this.blocks.numBlocks) {
      throw new CapacityError('the request needs more KV-cache blocks than the engine has', {
        field: 'max_tokens', expected: `at most ${this.blocks.numBlocks} blocks (lower max_tokens or raise limits.kvCacheBytes)`, found: `${needed} blocks`,
      });
    }
    const stopIds = new Set([...req.stopTokenIds, ...(req.ignoreEos ? [] : this.eosIds())]);
    const id = this.nextId++;
    const stream = new GenerationStream(id, () => this.abort(id), () => this.wake());
    const seq = new Sequence(id, prompt, req, maxNew, stopIds, stream, this.spec.vocabSize, this.tokenizer);
    if (request.signal) {
      if (request.signal.aborted) seq.aborted = true;
      request.signal.addEventListener('abort', () => this.abort(id), { once: true });
    }
    this.waiting.push(seq);
    this.wake();
    return stream;
  }

  step(): Promise<StepReport> {
    const run = this.busy.then(() => this.stepNow(null));
    this.busy = run.catch(() => {});
    return run;
  }

  /** Steps the engine keeps in flight when it steps on its own: the program's concurrent steps. */
  private get lanes(): number {
    return this.autoStep ? Math.max(1, Math.floor(this.program.concurrentSteps ?? 1)) : 1;
  }

  /** One step of lane k's sequences, after any relaunch queued before it. */
  private laneStep(k: number): Promise<StepReport> {
    return this.busy.then(() => this.stepNow(k));
  }

  expertLoad(): Promise<Float64Array[] | null> {
    return this.routed.read(this.program);
  }

  relaunch(parallel: ParallelStrategy): Promise<void> {
    const run = this.busy.then(() => this.relaunchNow(parallel));
    this.busy = run.catch(() => {});
    return run;
  }

  private async relaunchNow(parallel: ParallelStrategy): Promise<void> {
    const ctx = this.launch;
    if (this.closed) throw new AbortError('the engine is closed');
    if (!ctx) throw new ConfigError('only an engine with a parallel strategy can restart its ranks', { field: 'parallel', expected: 'a parallel strategy in the engine config', found: 'none' });
    const busy = this.running.length + this.waiting.length;
    if (busy) throw new BusyError('the ranks restart only while no request runs', { expected: 'no running or waiting requests', found: `${this.running.length} running, ${this.waiting.length} waiting` });
    await this.routed.retire(this.program);
    await this.program.dispose();
    try {
      this.program = await launchRanks(ctx, parallel);
      ctx.parallel = parallel;
    } catch (e) {
      this.program = await launchRanks(ctx, ctx.parallel); // back to the placement that worked
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of [...this.waiting, ...this.running]) s.aborted = true;
    await this.busy;
    await this.loops.settle();
    this.reap();
    await this.program.dispose();
    await this.offload?.close();
  }

  /** One step over the admitted sequences that no running step holds: all of them, or lane `lane`'s. */
  private async stepNow(lane: number | null): Promise<StepReport> {
    this.reap();
    this.admit();
    const free = this.running.filter((s) => !s.inFlight && (lane === null || s.lane === lane));
    const plan = planStep(free, this.maxBatchTokens, this.blocks.blockSize);
    if (!plan) return { tokens: 0, sequences: 0, finished: 0, steps: 0 };
    for (const { seq } of plan.work) seq.inFlight = true;
    let report: StepReport;
    try {
      report = await this.runPlan(plan, lane === null ? 1 : this.lanes);
    } finally {
      for (const { seq } of plan.work) seq.inFlight = false;
    }
    const before = this.running.length;
    this.reap();
    return { ...report, finished: report.finished + before - this.running.length };
  }

  /** Runs a planned step and hands its tokens to the sequences (a failed step fails them); the caller reaps. */
  private async runPlan(plan: StepPlan, lanes: number): Promise<StepReport> {
    // When every row only needs its argmax, a backend that can take it on the device sends back token
    // ids instead of [rows, vocab] logits (the copy and the host-side pass dominate large-batch decode).
    // Otherwise, where no row needs its logits, one that samples on the device gets each row's params and
    // the uniform its sampler draws now (the draw sample() would make), and also sends back only ids.
    const { runArgmax, runSample } = this.program;
    const idsOnly = plan.rows.every(({ promptLogit }) => !promptLogit);
    const argmaxOnly = idsOnly && runArgmax !== undefined && plan.rows.every(({ seq }) => seq.sampler.isGreedy);
    // Decode with room for more tokens runs several steps in one call where the program chains them.
    const chain = lanes === 1 ? this.chainLength(plan, argmaxOnly, idsOnly) : 1;
    let out: Float32Array | Int32Array;
    try {
      const options = lanes > 1 ? { concurrent: lanes } : undefined;
      if (chain > 1 && argmaxOnly) out = await this.program.runArgmaxSteps!(plan.batch, chain, options);
      // Each step's draws now, step after step: a sequence's draws stay in its tokens' order.
      else if (chain > 1) out = await this.program.runSampleSteps!(plan.batch, Array.from({ length: chain }, () => plan.rows.map(({ seq }) => seq.sampleRow())), options);
      else if (argmaxOnly) out = await runArgmax.call(this.program, plan.batch, options);
      else if (idsOnly && runSample) out = await runSample.call(this.program, plan.batch, plan.rows.map(({ seq, sample }) => (sample && !seq.aborted && seq.finishReason === null ? seq.sampleRow() : GREEDY_ROW)), options); // an unused row draws nothing
      else out = await this.program.run(plan.batch, options);
      const vocab = this.spec.vocabSize;
      const bad = out instanceof Int32Array ? out.find((id) => !(id >= 0 && id < vocab)) : undefined;
      if (bad !== undefined) throw new BackendError('the backend returned a token id outside the vocabulary', { expected: `ids in [0, ${vocab})`, found: String(bad) });
    } catch (e) {
      // The cache of every sequence in the failed step is now unknown: fail those, keep the others.
      for (const { seq } of plan.work) this.finish(seq, e);
      return { tokens: plan.batch.tokenIds.length * chain, sequences: plan.work.length, finished: plan.work.length, steps: chain };
    }
    if (chain > 1) return this.acceptChain(plan, out as Int32Array, chain);
    for (const { seq, count } of plan.work) seq.cached += count;
    const vocab = this.spec.vocabSize;
    plan.rows.forEach(({ seq, promptLogit, sample }, i) => {
      if (!sample || seq.aborted || seq.finishReason !== null) {
        if (promptLogit) seq.promptLogits.push((out as Float32Array).slice(i * vocab, (i + 1) * vocab));
        return;
      }
      if (out instanceof Int32Array) return seq.accept(out[i]);
      const logits = out.subarray(i * vocab, (i + 1) * vocab);
      if (promptLogit) seq.promptLogits.push(logits.slice());
      seq.accept(seq.sampler.sample(logits, seq.tokens));
    });
    return { tokens: plan.batch.tokenIds.length, sequences: plan.work.length, finished: 0, steps: 1 };
  }

  /**
   * Steps a decode step may chain: up to limits.decodeSteps, and no more than any of its sequences may still
   * generate (so every step stays inside the KV blocks the sequence holds). Greedy steps chain through
   * runArgmaxSteps; sampled ones through runSampleSteps where the program also samples on its own
   * (runSample) and no row has a repetition penalty (its penalized set changes with each token). 1: none.
   */
  private chainLength(plan: StepPlan, argmaxOnly: boolean, idsOnly: boolean): number {
    if (this.decodeSteps < 2 || !isChainableDecode(plan.batch)) return 1;
    const p = this.program;
    const chains = argmaxOnly ? p.runArgmaxSteps !== undefined : idsOnly && p.runSampleSteps !== undefined && p.runSample !== undefined && plan.rows.every(({ seq }) => seq.sampler.params.repetitionPenalty === 1);
    return chains ? Math.min(this.decodeSteps, ...plan.rows.map(({ seq }) => seq.maxNew - seq.generated)) : 1;
  }

  /**
   * Hands a chained call's [steps, rows] ids to the sequences, step by step. A sequence that finishes (a
   * stop token, or aborted meanwhile) takes nothing more: its later rows were computed for nothing, and
   * their KV entries, inside its own blocks, go with it.
   */
  private acceptChain(plan: StepPlan, ids: Int32Array, steps: number): StepReport {
    const rows = plan.rows.length;
    for (let j = 0; j < steps; j++) {
      plan.rows.forEach(({ seq }, i) => {
        if (seq.aborted || seq.finishReason !== null) return;
        seq.cached++;
        seq.accept(ids[j * rows + i]);
      });
    }
    return { tokens: rows * steps, sequences: plan.work.length, finished: 0, steps };
  }

  /** Moves waiting requests into the batch, FIFO, while sequences and KV blocks allow; each to the emptiest lane. */
  private admit(): void {
    const lanes = this.lanes;
    while (this.waiting.length && this.running.length < this.maxSequences) {
      const seq = this.waiting[0];
      const table = this.blocks.allocate(this.blocks.blocksFor(seq.promptLength + seq.maxNew));
      if (!table) return;
      seq.blockTable = table;
      const load = new Array<number>(lanes).fill(0);
      for (const s of this.running) if (s.lane < lanes) load[s.lane]++;
      seq.lane = load.indexOf(Math.min(...load));
      this.running.push(this.waiting.shift()!);
    }
  }

  /** Removes finished and aborted sequences (not those in a running step), frees their blocks and settles their streams. */
  private reap(): void {
    for (const list of [this.waiting, this.running]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const s = list[i];
        if ((s.aborted || s.finishReason !== null) && !s.inFlight) {
          list.splice(i, 1);
          this.finish(s);
        }
      }
    }
  }

  private finish(seq: Sequence, error?: unknown): void {
    if (seq.blockTable) this.blocks.release(seq.blockTable);
    seq.blockTable = null;
    for (const list of [this.waiting, this.running]) {
      const i = list.indexOf(seq);
      if (i >= 0) list.splice(i, 1);
    }
    if (error !== undefined) seq.stream.fail(error);
    else seq.stream.finish(seq.result());
  }

  private abort(id: number): void {
    const seq = [...this.waiting, ...this.running].find((s) => s.id === id);
    if (!seq) return;
    seq.aborted = true;
    if (this.waiting.includes(seq)) this.reap();
    // A paused sequence may have let the loop go idle; the next step reaps it and frees its blocks.
    else this.wake();
  }

  private wake(): void {
    if (this.autoStep && !this.closed) this.loops.wake();
  }

  private promptIds(r: GenerateRequest): number[] {
    if (r.inputIds) return [...r.inputIds];
    const tok = this.tokenizer;
    if (!tok) throw new TokenizerError('this model directory has no tokenizer.json: pass token ids (input_ids / --input-ids) instead of text', { field: r.messages ? 'messages' : 'prompt', expected: 'tokenizer.json in the model directory', found: 'none' });
    if (r.messages) return tok.encode(tok.applyChatTemplate([...r.messages], { addGenerationPrompt: true }), { addSpecialTokens: false });
    return tok.encode(r.prompt!);
  }

  private eosIds(): number[] {
    return [...new Set([...this.spec.eosTokenIds, ...(this.tokenizer?.eosTokenIds ?? [])])];
  }
}

export type { GenerationResult };
