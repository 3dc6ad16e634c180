// POST /admin/moe/replan: re-plans the expert placement of an expert-parallel engine from the routing
// statistics gathered while serving (load-aware: busiest experts first onto the least-loaded group) and
// restarts the ranks under it. Ranks restart only while no request runs: a replan under load is refused
// with 409 (E_BUSY), so no request is ever lost or recomputed; requests sent during the restart wait
// for it. Needs the API key when the server has one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ExpertPlacement, ParallelStrategy } from '@zinfer/core';
import { contiguousPlacement, expertReplanner, type ExpertReplanner } from '@zinfer/moe';
import { checkApiKey } from './auth.js';
import { sendJson } from './http-io.js';
import type { ServeContext } from './serve-context.js';
import { AuthError, ConflictError, NotFoundError, NotReadyError } from './server-errors.js';

export const REPLAN_PATH = '/admin/moe/replan';

/** What the route needs of @zinfer/moe's expertReplanner (structural, so tests may pass their own). */
export interface MoeReplanner {
  readonly placement: ExpertPlacement;
  owners(experts: readonly number[]): Int32Array[];
  replan(load: readonly Float64Array[]): { strategy: ParallelStrategy; placement: ExpertPlacement; adopt(): void };
}

/**
 * The replanner for `zinfer serve --ep N` (the flags' strategy is expert parallelism with contiguous
 * placement, --tp expert slicing and the --ep-dispatch / --ep-coordinated exchange; its replanner builds
 * the same one), or undefined for any other strategy.
 */
export function replannerFromFlags(flags: ReplanFlags, parallel: ParallelStrategy | undefined): ExpertReplanner | undefined {
  if (!(flags.ep > 1 && parallel?.name.startsWith('expert-parallel('))) return undefined;
  // As parallelFromFlags builds it: --tp with --ep slices each expert over tp ranks, ep × tp ranks in all.
  const tp = flags.tp ?? 1;
  return expertReplanner({ size: flags.ep * tp, tensor: tp, placement: contiguousPlacement(), dispatch: flags.epDispatch, coordinated: flags.epCoordinated });
}

/** The serve flags that shape expert parallelism. */
export interface ReplanFlags {
  ep: number;
  tp?: number;
  epDispatch?: 'all-reduce' | 'all-to-all';
  epCoordinated?: boolean;
}

export async function replanRoute(ctx: ServeContext, moe: MoeReplanner | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!checkApiKey(ctx.options.apiKey, req)) throw new AuthError();
  if ((req.method ?? 'GET') !== 'POST') throw new NotFoundError(`use POST ${REPLAN_PATH}`, { field: 'method', expected: 'POST', found: req.method ?? '' }, 405);
  const engine = ctx.engine;
  if (!engine) throw new NotReadyError();
  if (!moe || !engine.relaunch || !engine.expertLoad) {
    throw new ConflictError('this server cannot re-plan expert placement: start it with expert parallelism (--ep N)', { field: 'parallel', expected: 'an expert-parallel engine', found: 'none' });
  }
  const load = await engine.expertLoad();
  const routed = (load ?? []).reduce((s, l) => s + l.reduce((a, b) => a + b, 0), 0);
  if (!load || routed === 0) throw new ConflictError('no routing statistics yet: serve some requests first', { field: 'load', expected: 'tokens routed to the experts', found: load ? '0 tokens' : 'none (the backend keeps no statistics)' });
  const experts = load.map((l) => l.length);
  const before = { placement: moe.placement.name, owners: moe.owners(experts) };
  const next = moe.replan(load);
  await engine.relaunch(next.strategy); // BusyError (409) while requests run
  next.adopt();
  sendJson(res, 200, {
    placement: next.placement.name,
    previous: { placement: before.placement, groups: before.owners.map((o) => [...o]) },
    groups: moe.owners(experts).map((o) => [...o]),
    load: load.map((l) => [...l]),
  });
}
