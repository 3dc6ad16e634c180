// @zinfer/parallel: tensor-slicing and pipeline parallelism, and the communicators under them.
export { createShmGroup, shmCommunicator, type ShmGroup } from './shm-communicator.js';
export { pipelineParallel, tensorParallel, type PipelineParallelOptions, type TensorParallelOptions } from './strategies.js';
export { planTensorParallel } from './tensor-parallel/plan.js';
export { planPipeline } from './pipeline-parallel/plan.js';
export { ShardedWeights } from './tensor-parallel/sharded-weights.js';
export { splitBatch } from './launch/micro-batches.js';
export { launchPlan, type LaunchOptions } from './launch.js';
export { Nccl, NCCL_DTYPE, UNIQUE_ID_BYTES } from './nccl/api.js';
export { findNccl, ncclSearchDirs, type NcclDiscovery } from './nccl/library.js';
export { NcclCommunicator, NcclDeviceCollectives } from './nccl/communicator.js';
export { bindDevice, cudaDeviceCount, StagingBuffers } from './nccl/cuda-context.js';
export { abortNcclGrid, createNcclGrid, joinNcclGrid, type NcclGrid, type RankComms } from './launch/nccl-grid.js';
export { createCommCells, CommCell, type CommCells } from './nccl/comm-cell.js';
export { dataParallel, type DataParallelOptions, type DataParallelStrategy } from './data-parallel/data-parallel.js';
export type { DataParallelProgram } from './data-parallel/launch-data-parallel.js';
export { RankAssigner, idleBatch, mergeOutputs, type RankPart } from './data-parallel/rank-batches.js';
