// One group's weights laid out in one contiguous region (a host arena slice, or a run of the offload
// file), so that fetching a group is one copy or one large read, and its tensors are views over it.
import type { FloatDType, HostTensor, StreamedWeight, WeightName } from '@zinfer/core';
import { alignUp, TENSOR_ALIGN } from './align.js';

export interface WeightEntry {
  name: WeightName;
  dtype: FloatDType;
  shape: readonly number[];
  /** Byte offset of the tensor inside the group region. */
  offset: number;
  bytes: number;
}

export interface GroupLayout {
  entries: WeightEntry[];
  /** Bytes of the tensors themselves (what a device slot holds). */
  tensorBytes: number;
  /** Bytes of the region, padded to `align`. */
  regionBytes: number;
}

/** `align` pads the region; `tensorAlign` places each tensor (device slots want 256). */
export function layoutGroup(weights: readonly StreamedWeight[], align: number, tensorAlign = TENSOR_ALIGN): GroupLayout {
  let offset = 0;
  let tensorBytes = 0;
  const entries = weights.map(({ name, tensor }) => {
    const bytes = tensor.data.byteLength;
    const e: WeightEntry = { name, dtype: tensor.dtype, shape: [...tensor.shape], offset, bytes };
    offset = alignUp(offset + bytes, tensorAlign);
    tensorBytes += bytes;
    return e;
  });
  return { entries, tensorBytes, regionBytes: alignUp(Math.max(offset, 1), align) };
}

/** Copies the group's tensors into `dst` (the region, `regionBytes` long) at their layout offsets. */
export function copyGroup(layout: GroupLayout, weights: readonly StreamedWeight[], dst: Uint8Array): void {
  layout.entries.forEach((e, i) => {
    const d = weights[i].tensor.data;
    dst.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), e.offset);
  });
}

/** The group's tensors as views over a region that starts at `base` in `buffer`. */
export function groupViews(layout: GroupLayout, buffer: ArrayBuffer, base: number): StreamedWeight[] {
  return layout.entries.map((e) => ({ name: e.name, tensor: entryView(e, buffer, base) }));
}

export function entryView(e: WeightEntry, buffer: ArrayBuffer, base: number): HostTensor {
  const at = base + e.offset;
  const data = e.dtype === 'f32' ? new Float32Array(buffer, at, e.bytes / 4) : new Uint16Array(buffer, at, e.bytes / 2);
  return { dtype: e.dtype, shape: e.shape, data };
}
