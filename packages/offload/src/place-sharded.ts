// Placement for one rank of a cooperative fetch (FetchShard): the plan is the unsharded one (every rank
// holds the same resident layers and device slots for whole groups), but each streamed group goes into the
// tier as this rank's share of its image: the group laid out as one region, padded to size × ALIGN bytes so
// every share is ALIGN bytes aligned (direct reads, and whole f32 elements for the all-gather, whatever
// the weights' dtypes), then cut into `size` equal runs. The tier thus holds 1/size of the streamed bytes.
import { layerWeightGroups, type FetchShard, type Graph, type KernelBackend, type StreamedWeight, type WeightName, type WeightSource } from '@zinfer/core';
import { ALIGN, formatBytes } from './align.js';
import { DeviceTier } from './device-tier.js';
import { diskStaging } from './disk-staging.js';
import { copyGroup, layoutGroup, type GroupLayout } from './group-layout.js';
import { hostStaging } from './host-staging.js';
import { deviceLine, holdNonLayer, placement, stagingOptions, type WeightPlacement } from './place-weights.js';
import { planPlacement, type Plan } from './placement-plan.js';
import { ShardedStream } from './sharded-stream.js';
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
  const layouts: GroupLayout[] = [];
  let staged: Staged;
  try {
    for (const [i, g] of groups.slice(plan.resident).entries()) {
      const ws = g.names.map((name) => ({ name, tensor: weights.get(name) }));
      const { layout, share } = shareOf(ws, shard);
      layouts.push(layout);
      await staging.add([{ name: `share ${i} of rank ${shard.rank}`, tensor: { dtype: 'f32', shape: [share.length], data: share } }]);
    }
    staged = await staging.finish({ ...plan, resident: 0 });
  } catch (e) {
    await staging.abort();
    throw e;
  }
  const names = groups.slice(plan.resident).map((g) => g.names);
  const stream = staged.stream ? new ShardedStream(names, o.prefetch, staged.stream, layouts, shard.communicator, opts.alloc) : null;
  const image = layouts.reduce((a, l) => a + l.regionBytes, 0);
  const fetchLine = `fetch: rank ${shard.rank} of ${shard.size} keeps 1/${shard.size} of each streamed layer (${formatBytes(image / shard.size)} of ${formatBytes(image)}); an all-gather assembles each layer`;
  const summary = [deviceLine(o, plan, nonLayer.names.length, nonLayer.bytes, layers), staged.line, fetchLine];
  const withStream: Staged = { ...staged, stream, close: async () => { await stream?.close(); await staged.close(); } };
  return { ...placement(graph, weights, device, withStream, summary), tier: o.tier, plan: plan as Plan, streamedLayers, file: staged.file };
}

/** The group's layout (region padded to size × ALIGN) and this rank's run of its image, as f32. */
export function shareOf(weights: readonly StreamedWeight[], shard: Pick<FetchShard, 'rank' | 'size'>): { layout: GroupLayout; share: Float32Array } {
  const layout = layoutGroup(weights, shard.size * ALIGN);
  const image = new Uint8Array(layout.regionBytes);
  copyGroup(layout, weights, image);
  const bytes = layout.regionBytes / shard.size;
  return { layout, share: new Float32Array(image.buffer, shard.rank * bytes, bytes / 4).slice() };
}

/** A weight's stored bytes, from the headers where the source can tell (no tensor read twice). */
function storedBytes(graph: Graph, weights: WeightSource, name: WeightName): number {
  const shape = graph.weights.get(name)?.shape;
  const dtype = weights.dtypeOf?.(name);
  if (!shape || !dtype) return weights.get(name).data.byteLength;
  return shape.reduce((a, b) => a * b, 1) * (dtype === 'f32' ? 4 : 2);
}
