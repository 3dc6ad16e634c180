// @zinfer/moe: Mixture-of-Experts expert placement and expert parallelism.
export { contiguousPlacement, loadAwarePlacement, roundRobinPlacement } from './placements.js';
export { expertParallel, planExpertParallel, type ExpertParallelOptions } from './expert-parallel.js';
export { expertImbalance, expertReplanner, rankImbalance, type ExpertReplanner } from './stats.js';
