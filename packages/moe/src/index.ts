// @zinfer/moe: Mixture-of-Experts expert placement and expert parallelism.
export { contiguousPlacement, loadAwarePlacement, roundRobinPlacement } from './placements.js';
export { expertParallel, planExpertParallel } from './expert-parallel.js';
export type { ExpertParallelOptions, MoeLayout } from './options.js';
export { expertImbalance, expertReplanner, rankImbalance, type ExpertReplanner } from './stats.js';
