// The placement decision, pure: from the byte sizes of the non-layer weights and of each layer group
// (in step order), how many leading layers stay on the device. The device budget pays first for the
// streaming slots and the non-layer weights, then holds whole layers while they fit.
import { CapacityError } from '@zinfer/core';

export interface PlanInput {
  /** Weight budget of the device; undefined streams every layer. */
  deviceMemory: number | undefined;
  prefetch: number;
  nonLayerBytes: number;
  /** Tensor bytes of each group, in step order. */
  groupBytes: readonly number[];
}

export interface Plan {
  /** Groups 0 … resident-1 stay on the device; the rest stream. */
  resident: number;
  /** Device bytes kept for streamed groups: (prefetch + 1) slots of the largest group (0 without streaming). */
  slotBytes: number;
  /** Device bytes the plan uses: non-layer weights, resident layers and the slots. */
  deviceBytes: number;
}

export function planPlacement({ deviceMemory, prefetch, nonLayerBytes, groupBytes }: PlanInput): Plan {
  const n = groupBytes.length;
  const all = groupBytes.reduce((a, b) => a + b, 0);
  if (deviceMemory !== undefined && nonLayerBytes + all <= deviceMemory) return { resident: n, slotBytes: 0, deviceBytes: nonLayerBytes + all };
  const slotBytes = Math.min(prefetch + 1, n) * Math.max(0, ...groupBytes);
  const floor = nonLayerBytes + slotBytes;
  if (deviceMemory === undefined) return { resident: 0, slotBytes, deviceBytes: floor };
  if (floor > deviceMemory) {
    throw new CapacityError(`the device budget cannot hold the non-layer weights (${nonLayerBytes} bytes) and ${Math.min(prefetch + 1, n)} streaming slots of ${Math.max(...groupBytes)} bytes`, {
      field: 'offload.deviceMemory', expected: `at least ${floor} bytes (--device-memory), or a smaller prefetch`, found: `${deviceMemory} bytes`,
    });
  }
  let used = floor;
  let resident = 0;
  while (resident < n && used + groupBytes[resident] <= deviceMemory) used += groupBytes[resident++];
  return { resident, slotBytes, deviceBytes: used };
}
