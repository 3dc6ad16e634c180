// Restarting an engine's ranks under another parallel strategy (the same model, backend and KV-cache
// size): how a re-planned expert placement takes effect. The engine calls it between steps with no
// request in flight, after disposing the old program (a GPU holds one copy of the weights, not two).
import type { KernelBackend, KvCacheSpec, ParallelStrategy, Program } from './contracts.js';
import type { FloatDType } from './dtype.js';
import { BackendError, ConfigError } from './errors.js';
import { loadModel } from './model.js';

/** What a launch needs besides the strategy; the engine keeps it from createEngine. */
export interface RelaunchContext {
  model: string;
  dtype?: FloatDType;
  backend: KernelBackend;
  kvCache: KvCacheSpec;
  /** The strategy the running program was launched with. */
  parallel: ParallelStrategy;
}

export async function launchRanks(ctx: RelaunchContext, parallel: ParallelStrategy): Promise<Program> {
  if (parallel.ranks !== ctx.parallel.ranks) {
    throw new ConfigError('a relaunch keeps the number of ranks', { field: 'parallel.ranks', expected: String(ctx.parallel.ranks), found: String(parallel.ranks) });
  }
  const model = await loadModel(ctx.model, { dtype: ctx.dtype });
  try {
    const plan = parallel.plan(model.graph, Array.from({ length: parallel.ranks }, (_, rank) => ({ rank, backend: ctx.backend.name })));
    for (const node of plan.ranks.flatMap((r) => r.graph.nodes)) {
      if (!ctx.backend.supports(node)) throw new BackendError(`backend ${ctx.backend.name} does not support op ${node.op}`, { expected: 'a backend that implements every op of the model' });
    }
    return await parallel.launch({ plan, backend: ctx.backend, model: { dir: ctx.model, dtype: ctx.dtype }, weights: model.weights, kvCache: ctx.kvCache });
  } finally {
    model.weights.close();
  }
}
