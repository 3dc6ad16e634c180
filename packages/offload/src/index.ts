// @zinfer/offload: ZeRO-Inference offload: OffloadTier plugins (device, host, disk), the placement of a
// model's layers over them from byte budgets, and the weight streams that prefetch layers while one computes.
export { weightOffload, type WeightOffloadOptions } from './weight-offload.js';
export type { WeightPlacement } from './place-weights.js';
export { planPlacement, type Plan, type PlanInput } from './placement-plan.js';
export { DeviceTier } from './device-tier.js';
export { HostTier, type HostRegion } from './host-tier.js';
export { DiskTier, type DiskRegion } from './disk-tier.js';
export { DiskFile, type AlignedBuffer } from './disk-file.js';
export { HostStream } from './host-stream.js';
export { DiskStream } from './disk-stream.js';
export { OffloadFileError } from './offload-file-error.js';
export { ALIGN, formatBytes } from './align.js';
export { ShardedStream, allGatherChunked } from './sharded-stream.js';
export { shareOf } from './place-sharded.js';
