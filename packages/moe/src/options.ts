// The options of expertParallel, checked and resolved into the layout the planner follows.
import { ConfigError, type ExpertPlacement } from '@zinfer/core';
import type { NodeOptions } from '@zinfer/parallel';

export interface ExpertParallelOptions {
  /** Number of ranks (devices). */
  size: number;
  /** Which expert group holds each expert (plugins: contiguous, round-robin, load-aware). */
  placement: ExpertPlacement;
  /**
   * Expert slicing: each expert is tensor-sliced (column gate/up, row down) over this many consecutive
   * ranks, its expert group; the experts are placed on size / tensor groups. Default 1, or size / experts
   * when ranks outnumber experts.
   */
  tensor?: number;
  /**
   * Attention, dense MLPs, shared experts, embeddings and LM head: 'sliced' over all ranks exactly as
   * tensorParallel slices them (default), or 'replicated' on every rank.
   */
  dense?: 'sliced' | 'replicated';
  /**
   * How the experts' outputs meet: 'all-reduce' (default; every rank computes its experts' share of every
   * row, one all-reduce sums them) or 'all-to-all' (each rank sends its share of the rows to the ranks
   * holding their experts and gets the results back: moeDispatch / moeCombine).
   */
  dispatch?: 'all-reduce' | 'all-to-all';
  /** With all-to-all and tensor > 1: the paper's coordinated exchange (only across expert groups, then an all-gather). */
  coordinated?: boolean;
  ranks?: 'workers' | 'inline';
  /** Worker ranks: a step not finished by every rank within this many ms fails as a hung rank. */
  timeoutMs?: number;
  /** Ranks spread over node processes (this one is RANK 0); default from the environment (WORLD_SIZE, ...), as tensorParallel's. */
  nodes?: NodeOptions | null;
}

export interface MoeLayout {
  size: number;
  /** Ranks per expert group (expert slicing width). */
  tensor: number;
  groups: number;
  dense: 'sliced' | 'replicated';
  dispatch: 'all-reduce' | 'all-to-all';
  coordinated: boolean;
}

const positive = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1;

function oneOf<T extends string>(field: string, value: T | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value)) throw new ConfigError(`invalid ${field}`, { field: `parallel.${field}`, expected: allowed.map((a) => `'${a}'`).join(' or '), found: String(value) });
  return value;
}

/** Checks the options against a model with `experts` experts per MoE layer. */
export function resolveLayout(opts: ExpertParallelOptions, experts: number): MoeLayout {
  const { size } = opts;
  if (!positive(size)) throw new ConfigError('invalid expert-parallel size', { field: 'parallel.size', expected: 'a positive integer', found: String(size) });
  if (!opts.placement || typeof opts.placement.place !== 'function') throw new ConfigError('expert parallelism needs a placement plugin', { field: 'parallel.placement', expected: 'an ExpertPlacement', found: String(opts.placement) });
  const tensor = opts.tensor ?? (size > experts && size % experts === 0 ? size / experts : 1);
  if (!positive(tensor) || size % tensor !== 0) throw new ConfigError('the expert-slicing width must divide the ranks', { field: 'parallel.tensor', expected: `a divisor of ${size}`, found: String(opts.tensor) });
  if (size / tensor > experts) {
    throw new ConfigError(`${size / tensor} expert groups for ${experts} experts: some ranks would hold none`, { field: 'parallel.tensor', expected: `a divisor of ${size} leaving at most ${experts} groups (size / tensor)`, found: String(tensor) });
  }
  const dispatch = oneOf('dispatch', opts.dispatch, ['all-reduce', 'all-to-all'], 'all-reduce');
  const dense = oneOf('dense', opts.dense, ['sliced', 'replicated'], 'sliced');
  if (opts.coordinated !== undefined && typeof opts.coordinated !== 'boolean') throw new ConfigError('invalid coordinated flag', { field: 'parallel.coordinated', expected: 'true or false', found: String(opts.coordinated) });
  if (opts.coordinated && dispatch !== 'all-to-all') throw new ConfigError('the coordinated exchange is an all-to-all option', { field: 'parallel.coordinated', expected: "dispatch 'all-to-all'", found: `dispatch '${dispatch}'` });
  return { size, tensor, groups: size / tensor, dense, dispatch, coordinated: opts.coordinated ?? false };
}
