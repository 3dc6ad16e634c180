// OffloadPlacement from a graph and its weights: reads the non-layer weights (resident), stages every
// layer group in the tier in step order, plans, and serves compile the resident weights.
import { BackendError, layerWeightGroups, type FetchShard, type Graph, type KernelBackend, type OffloadPlacement, type StreamEvent, type WeightName, type WeightSource } from '@zinfer/core';
import { formatBytes, formatLayers } from './align.js';
import { DeviceTier } from './device-tier.js';
import { diskStaging } from './disk-staging.js';
import { hostStaging } from './host-staging.js';
import { planPlacement, type Plan } from './placement-plan.js';
import { placeSharded } from './place-sharded.js';
import type { Staged, StagingOptions } from './staging.js';
import type { CheckedOptions } from './weight-offload.js';

/** The placement, with the numbers behind its summary (for tests and benches). */
export interface WeightPlacement extends OffloadPlacement {
  readonly tier: 'host' | 'disk';
  readonly plan: Plan;
  /** Layer numbers of the streamed groups, in stream order. */
  readonly streamedLayers: readonly number[];
  /** The disk tier's file (null for the host tier). */
  readonly file: string | null;
}

export async function placeWeights(o: CheckedOptions, graph: Graph, weights: WeightSource, backend: KernelBackend, shard?: FetchShard): Promise<WeightPlacement> {
  if (shard && shard.size > 1) return placeSharded(o, graph, weights, backend, shard);
  const groups = layerWeightGroups(graph);
  const layers = groups.map((g) => g.layer);
  const layered = new Set(groups.flatMap((g) => g.names));
  const device = new DeviceTier(o.deviceMemory ?? Number.POSITIVE_INFINITY);
  const { names: nonLayer, bytes: nonLayerBytes } = holdNonLayer(graph, weights, layered, device);
  const opts = stagingOptions(o, backend);
  const staging = o.tier === 'disk' ? await diskStaging(opts, layers) : hostStaging(opts, device, layers);
  let staged: Staged;
  let plan: Plan | undefined;
  try {
    const groupBytes: number[] = [];
    for (const g of groups) {
      const ws = g.names.map((name) => ({ name, tensor: weights.get(name) }));
      groupBytes.push(ws.reduce((a, w) => a + w.tensor.data.byteLength, 0));
      await staging.add(ws);
    }
    plan = planPlacement({ deviceMemory: o.deviceMemory, prefetch: o.prefetch, nonLayerBytes, groupBytes });
    staged = await staging.finish(plan);
  } catch (e) {
    await staging.abort();
    throw e;
  }
  const summary = [deviceLine(o, plan!, nonLayer.length, nonLayerBytes, layers), staged.line];
  return { ...placement(graph, weights, device, staged, summary), deviceBytes: plan!.deviceBytes, tier: o.tier, plan: plan!, streamedLayers: layers.slice(plan!.resident), file: staged.file };
}

/** The weights outside every layer group go to the device tier (always resident). */
export function holdNonLayer(graph: Graph, weights: WeightSource, layered: ReadonlySet<WeightName>, device: DeviceTier): { names: WeightName[]; bytes: number } {
  let bytes = 0;
  const names = [...graph.weights.keys()].filter((n) => !layered.has(n));
  for (const name of names) {
    const t = weights.get(name);
    bytes += t.data.byteLength;
    device.hold(name, t);
  }
  return { names, bytes };
}

export function stagingOptions(o: CheckedOptions, backend: KernelBackend): StagingOptions {
  return {
    prefetch: o.prefetch, buffers: o.buffers, hostMemory: o.hostMemory, dir: o.dir, directIo: o.directIo,
    alloc: backend.allocHost ? (bytes) => backend.allocHost!(bytes) : (bytes) => new ArrayBuffer(bytes),
    pinned: backend.allocHost !== undefined,
  };
}

export function deviceLine(o: CheckedOptions, plan: Plan, nonLayer: number, nonLayerBytes: number, layers: readonly number[]): string {
  const budget = o.deviceMemory === undefined ? 'no budget: every layer streams' : `budget ${formatBytes(o.deviceMemory)}`;
  const slots = plan.slotBytes ? `, streaming slots ${formatBytes(plan.slotBytes)} (prefetch ${o.prefetch})` : '';
  return `device: ${formatBytes(plan.deviceBytes)} (${budget}): ${nonLayer} non-layer weights ${formatBytes(nonLayerBytes)}, layers ${formatLayers(layers.slice(0, plan.resident))} resident${slots}`;
}

export function placement(graph: Graph, source: WeightSource, device: DeviceTier, staged: Staged, summary: string[]): OffloadPlacement {
  const streamed = new Set<WeightName>(staged.stream?.groups.flat() ?? []);
  const resident: WeightSource = {
    names: () => [...graph.weights.keys()].filter((n) => !streamed.has(n)),
    get(name) {
      if (streamed.has(name)) throw new BackendError('this weight streams from the offload tier: acquire it through the stream, do not load it at compile time', { tensor: name });
      // Handed over once: the backend copies or keeps it, so the tier drops its reference.
      if (device.has(name)) return device.take(name, true);
      return staged.residentWeight(name) ?? source.get(name);
    },
  };
  let closed = false;
  return {
    resident,
    stream: staged.stream,
    summary,
    timeline: (): StreamEvent[] => staged.stream?.events.slice() ?? [],
    async close() {
      if (closed) return;
      closed = true;
      await staged.close();
    },
  };
}
