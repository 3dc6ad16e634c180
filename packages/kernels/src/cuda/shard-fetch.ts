// One group of a cooperative fetch, on the device: the rank copies its run of the group's image from
// (pinned) host memory into its place in the slot, then an in-place NCCL all-gather over the ranks fills in
// the others' runs; "copy done" is recorded after the gather, so the compute stream waits for the whole
// group. The gather runs on a stream of its own by default (ZINFER_SHARD_GATHER=copy: on the copy stream),
// so the next group's host → device copy overlaps this group's all-gather.
import { BackendError, type WeightName } from '@zinfer/core';
import type { Queue } from './copy-engine.js';
import type { DeviceWeight } from './device-weights.js';
import type { StreamedWeights } from './streamed-weights.js';

export type GatherQueue = Extract<Queue, 'copy' | 'gather'>;

/** The queue the all-gathers go on, from ZINFER_SHARD_GATHER ('gather', the default, or 'copy'). */
export function gatherQueueFromEnv(): GatherQueue {
  const v = process.env.ZINFER_SHARD_GATHER ?? 'gather';
  if (v !== 'gather' && v !== 'copy') throw new BackendError('ZINFER_SHARD_GATHER names the stream of the cooperative fetch all-gathers', { field: 'ZINFER_SHARD_GATHER', expected: "'gather' or 'copy'", found: v });
  return v;
}

export function enqueueShard(s: StreamedWeights, g: number, share: Uint8Array, prev: number | undefined, onDevice: Map<WeightName, DeviceWeight>): void {
  const { plan, copies, host, slotPtrs, stats } = s;
  const shard = s.stream.shard!;
  const device = shard.communicator.device;
  const group = plan.groups[g];
  const run = group.bytes / shard.size;
  if (!device) throw new BackendError('a cooperative fetch on the GPU needs device collectives (NCCL) in its communicator', { field: 'stream.shard.communicator' });
  if (share.byteLength !== run) throw new BackendError(`stream group ${g}: rank ${shard.rank}'s share is ${share.byteLength} bytes, the image needs ${run}`, { field: 'stream.shard', expected: String(run), found: String(share.byteLength) });
  const slot = slotPtrs[group.slot];
  const at = slot + BigInt(shard.rank * run);
  const ev = s.eventsOf(g);
  if (prev !== undefined) copies.wait('copy', s.eventsOf(prev).computeEnd);
  copies.record(ev.copyStart, 'copy');
  let src = host.address(share);
  if (src === null) {
    const staging = s.stagingFor(group.slot);
    new Uint8Array(staging.buffer, shard.rank * run, run).set(share);
    src = staging.ptr + BigInt(shard.rank * run);
    stats.stagedBytes += run;
  }
  copies.copy(at, src, run);
  const q = s.gatherQueue;
  copies.record(ev.shareEnd, 'copy'); // also times the run's copy apart from the gather (StreamStats)
  if (q === 'gather') copies.wait('gather', ev.shareEnd);
  device.allGather(at, slot, run / 4, 'f32', copies.streamHandle(q));
  copies.record(ev.copyEnd, q);
  stats.copiedBytes += run;
  stats.gatheredBytes += group.bytes - run;
  for (const [name, e] of group.layout) onDevice.set(name, { ptr: slot + BigInt(e.offset), dtype: e.dtype, shape: e.shape, bytes: e.bytes });
}
