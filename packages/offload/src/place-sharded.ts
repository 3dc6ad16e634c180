// Placement for one rank of a cooperative fetch (FetchShard): the plan is the unsharded one (every rank
// holds the same resident layers and device slots for whole groups), but each streamed group goes into the
// tier as this rank's share of its image: the group laid out as one region, padded to size × ALIGN bytes so
// every share is ALIGN bytes aligned (direct reads, and whole f32 elements for the all-gather, whatever
// the weights' dtypes), then cut into `size` equal runs. The tier thus holds 1/size of the streamed bytes.
import { layerWeightGroups, toF32, type FetchShard, type Graph, type KernelBackend, type StreamedWeight, type WeightName, type WeightSource } from '@zinfer/core';
import { ALIGN, formatBytes } from './align.js';
import { DeviceTier } from './device-tier.js';
import { diskStaging } from './disk-staging.js';
import { layoutGroup, type GroupLayout } from './group-layout.js';
import { hostStaging } from './host-staging.js';
import { deviceLine, holdNonLayer, placement, stagingOptions, type WeightPlacement } from './place-weights.js';
import { planPlacement, type Plan } from './placement-plan.js';
import { ShardedStream, type ShardedGroup } from './sharded-stream.js';
import type { Staged } from './staging.js';
import type { CheckedOptions } from './weight-offload.js';

export async function placeSharded(o: CheckedOptions, graph: Graph, weights: WeightSource, backend: KernelBackend, shard: FetchShard): Promise<WeightPlacement> {
  const groups = layerWeightGroups(graph);
  const layers = groups.map((g) => g.layer);
  const device = new DeviceTier(o.deviceMemory ?? Number.POSITIVE_INFINITY);
  const nonLayer = holdNonLayer(graph, weights, new Set(groups.flatMap((g) => g.names)), device);
  const groupBytes = groups.map((g) => g.names.reduce((a, n) => a + storedBytes(graph, weights, n), 0));
  const plan = planPlacement({ deviceMemory: o.deviceMemory, prefetch: o.prefetch, nonLayerBytes: nonLayer.bytes, groupBytes });
  for (const g of groups.slice(0, plan.resident)) for (const name of g.names) device.hold(name, weights.get(name));
  const streamedLayers = layers.slice(plan.resident);
  const opts = stagingOptions(o, backend);
  const staging = o.tier === 'disk' ? await diskStaging(opts, streamedLayers) : hostStaging(opts, device, streamedLayers);
  const layouts: ShardedGroup[] = [];
  let staged: Staged;
  try {
    for (const [i, g] of groups.slice(plan.resident).entries()) {
      const ws = g.names.map((name) => ({ name, tensor: weights.get(name) }));
      const { layout, stored, share } = shareOf(ws, shard);
      layouts.push({ layout, stored });
      await staging.add([{ name: `share ${i} of rank ${shard.rank}`, tensor: { dtype: 'f32', shape: [share.length], data: share } }]);
    }
    staged = await staging.finish({ ...plan, resident: 0 });
  } catch (e) {
    await staging.abort();
    throw e;
  }
  const names = groups.slice(plan.resident).map((g) => g.names);
  const stream = staged.stream ? new ShardedStream(names, o.prefetch, staged.stream, layouts, shard.communicator, opts.alloc) : null;
  const image = layouts.reduce((a, l) => a + l.layout.regionBytes, 0);
  const fetchLine = `fetch: rank ${shard.rank} of ${shard.size} keeps 1/${shard.size} of each streamed layer (${formatBytes(image / shard.size)} of ${formatBytes(image)}); an all-gather assembles each layer`;
  const summary = [deviceLine(o, plan, nonLayer.names.length, nonLayer.bytes, layers), staged.line, fetchLine];
  const withStream: Staged = { ...staged, stream, close: async () => { await stream?.close(); await staged.close(); } };
  return { ...placement(graph, weights, device, withStream, summary), deviceBytes: plan.deviceBytes, tier: o.tier, plan: plan as Plan, streamedLayers, file: staged.file };
}

/** Where device slots place tensors (the CUDA backend's alignment), so a slot can take the image as it is. */
export const SHARD_TENSOR_ALIGN = 256;

/**
 * The group's image layout and this rank's run of it, as f32. The image is what a device slot holds:
 * vectors f32 (lossless from f16/bf16; device backends keep vectors in f32), tensors 256-byte aligned, the
 * region padded to size × ALIGN. Only the rank's run is written (no whole image per rank).
 */
export function shareOf(weights: readonly StreamedWeight[], shard: Pick<FetchShard, 'rank' | 'size'>): ShardedGroup & { share: Float32Array } {
  const ws = weights.map((w) => (w.tensor.shape.length === 1 && w.tensor.dtype !== 'f32' ? { name: w.name, tensor: { dtype: 'f32' as const, shape: w.tensor.shape, data: toF32(w.tensor.dtype, w.tensor.data) } } : w));
  const layout = layoutGroup(ws, shard.size * ALIGN, SHARD_TENSOR_ALIGN);
  const bytes = layout.regionBytes / shard.size;
  const [from, to] = [shard.rank * bytes, (shard.rank + 1) * bytes];
  const share = new Uint8Array(bytes);
  layout.entries.forEach((e, i) => {
    const lo = Math.max(from, e.offset);
    const hi = Math.min(to, e.offset + e.bytes);
    if (lo >= hi) return;
    const d = ws[i].tensor.data;
    share.set(new Uint8Array(d.buffer, d.byteOffset + (lo - e.offset), hi - lo), lo - from);
  });
  return { layout, stored: weights.map((w) => w.tensor.dtype), share: new Float32Array(share.buffer) };
}

/** A weight's stored bytes, from the headers where the source can tell (no tensor read twice). */
function storedBytes(graph: Graph, weights: WeightSource, name: WeightName): number {
  const shape = graph.weights.get(name)?.shape;
  const dtype = weights.dtypeOf?.(name);
  if (!shape || !dtype) return weights.get(name).data.byteLength;
  return shape.reduce((a, b) => a * b, 1) * (dtype === 'f32' ? 4 : 2);
}
