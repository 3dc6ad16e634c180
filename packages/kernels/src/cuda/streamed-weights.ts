// What a streamed program owns for its streamed weights: `prefetch + 1` device slots of the largest group's
// size, pinned staging per slot (only when a tier hands over pageable tensors or ones that need a dtype
// conversion), four events per group (copy start and end on the copy stream, compute start and end on the
// compute stream) and one anchor per step. Each run makes a StreamStep that moves the groups through them.
import { BackendError, type FloatDType, type Graph, type StreamEvent, type WeightName, type WeightStream } from '@zinfer/core';
import type { CopyEngine, GpuEvent } from './copy-engine.js';
import type { DeviceWeight } from './device-weights.js';
import type { ExecPlan } from './exec-plan.js';
import type { Gpu } from './gpu.js';
import type { HostMemory } from './host-memory.js';
import { planStream, streamedDtype, type StreamPlan } from './stream-plan.js';
import { StreamStep } from './stream-step.js';
import { fmtBytes } from './format.js';
import { gatherQueueFromEnv, type GatherQueue } from './shard-fetch.js';

/**
 * The dtype planned for a weight that is not resident: what compile's fusion plan needs before any group
 * is fetched. In f32 mode matrices keep the resident matrices' stored dtype (a tier giving another one is
 * converted on the host), so kernels and their results are those of the resident program.
 */
export function streamedDtypeOf(graph: Graph, resident: ReadonlyMap<WeightName, DeviceWeight>, act: FloatDType): (name: WeightName) => FloatDType {
  const matrix = [...resident.values()].find((w) => w.shape.length !== 1);
  return (name) => streamedDtype(graph.weights.get(name)?.shape ?? [], act, matrix?.dtype ?? 'f32');
}

/** Plans the stream and allocates its slots; errors name what is missing (a Gpu without a copy engine, host memory). */
export function openStreamedWeights(gpu: Gpu, graph: Graph, exec: ExecPlan, stream: WeightStream, act: FloatDType, resident: ReadonlyMap<WeightName, DeviceWeight>, host: HostMemory | undefined): StreamedWeights {
  if (stream.shard && !stream.shard.communicator.device) throw new BackendError(`a cooperative fetch on ${gpu.name} needs device collectives (NCCL ranks) in stream.shard.communicator`, { field: 'stream.shard.communicator' });
  if (!gpu.copyEngine || !host) throw new BackendError(`${gpu.name} cannot stream weights: it has no ${gpu.copyEngine ? 'pinned host memory' : 'copy engine'}`, { field: 'stream' });
  const matrix = [...resident.values()].find((w) => w.shape.length !== 1);
  const plan = planStream(graph, exec, stream, act, matrix?.dtype ?? 'f32');
  return new StreamedWeights(gpu, gpu.copyEngine(), host, plan, stream);
}

export interface GroupEvents {
  copyStart: GpuEvent;
  copyEnd: GpuEvent;
  computeStart: GpuEvent;
  computeEnd: GpuEvent;
  /** Cooperative fetch: the rank's run is on the device (the gather stream waits for it). */
  shareEnd: GpuEvent;
}

/** What streaming did, for tests and benches. */
export interface StreamStats {
  steps: number;
  /** Bytes copied to the device (all steps), and those staged through pinned buffers first. */
  copiedBytes: number;
  stagedBytes: number;
  /** Bytes the cooperative fetch's all-gathers brought from the other ranks (0 without a shard). */
  gatheredBytes: number;
  /** Cooperative fetch, the last step: ms of the runs' host → device copies and of the all-gathers after them (summed over groups). */
  shardCopyMs: number;
  gatherMs: number;
  /** The last step's copies ('fetch': host → device on the copy stream) and group computes, from device events. */
  timeline: StreamEvent[];
}

export class StreamedWeights {
  readonly slotPtrs: bigint[] = [];
  readonly stats: StreamStats = { steps: 0, copiedBytes: 0, stagedBytes: 0, gatheredBytes: 0, shardCopyMs: 0, gatherMs: 0, timeline: [] };
  /** Where a cooperative fetch's all-gathers run (ZINFER_SHARD_GATHER). */
  readonly gatherQueue: GatherQueue = gatherQueueFromEnv();
  private readonly staging: (ArrayBuffer | null)[];
  private readonly events = new Map<number, GroupEvents>();
  private anchorEvent: GpuEvent | null = null;

  constructor(private readonly gpu: Gpu, readonly copies: CopyEngine, readonly host: HostMemory, readonly plan: StreamPlan, readonly stream: WeightStream) {
    this.staging = Array.from({ length: plan.slots }, () => null);
    const total = plan.slots * plan.slotBytes;
    const { free } = gpu.memInfo();
    if (total > free) {
      throw new BackendError(`out of GPU memory for streamed weights: ${plan.slots} slots of ${fmtBytes(plan.slotBytes)} need ${fmtBytes(total)}, ${fmtBytes(free)} free on ${gpu.name}`, {
        field: 'stream.prefetch', expected: `at most ${Math.floor(free / plan.slotBytes) - 1}`, found: String(plan.slots - 1),
      });
    }
    try {
      for (let s = 0; s < plan.slots; s++) this.slotPtrs.push(gpu.alloc(plan.slotBytes, `streamed weight slot ${s} of ${plan.slots}`));
    } catch (e) {
      for (const p of this.slotPtrs) gpu.free(p);
      throw e;
    }
  }

  /** Device bytes of the slots. */
  get deviceBytes(): number {
    return this.plan.slots * this.plan.slotBytes;
  }

  /** A new executor for one step. */
  step(): StreamStep {
    this.stats.steps++;
    return new StreamStep(this);
  }

  eventsOf(group: number): GroupEvents {
    let e = this.events.get(group);
    if (!e) {
      const c = this.copies;
      e = { copyStart: c.event(), copyEnd: c.event(), computeStart: c.event(), computeEnd: c.event(), shareEnd: c.event() };
      this.events.set(group, e);
    }
    return e;
  }

  anchor(): GpuEvent {
    return (this.anchorEvent ??= this.copies.event());
  }

  /** The slot's pinned staging buffer (slotBytes), allocated on first use. */
  stagingFor(slot: number): { buffer: ArrayBuffer; ptr: bigint } {
    const buffer = (this.staging[slot] ??= this.host.alloc(this.plan.slotBytes));
    return { buffer, ptr: this.host.address(new Uint8Array(buffer, 0, 0))! };
  }

  /** Frees the slots (stream-ordered), staging and events; the copy stream is the Gpu's to dispose. */
  dispose(): void {
    for (const p of this.slotPtrs) this.gpu.free(p);
    this.slotPtrs.length = 0;
    for (const b of this.staging) if (b) this.host.free(b);
    this.staging.fill(null);
    for (const e of this.events.values()) for (const ev of Object.values(e)) this.copies.destroyEvent(ev);
    this.events.clear();
    if (this.anchorEvent) this.copies.destroyEvent(this.anchorEvent);
    this.anchorEvent = null;
  }
}
