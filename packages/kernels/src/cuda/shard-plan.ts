// Slots of a cooperative fetch (WeightStream.shard): the slot holds the group's image byte for byte, since
// each rank copies only its run of the image and an all-gather fills in the others' runs. So the image's
// layout is the slot's, and it must be one this backend can compute from: every weight in the dtype the
// program planned for it, at a 256-byte aligned offset, the image whole f32 elements per rank.
import { BackendError, shapeString, type FloatDType, type Graph, type StreamShard, type WeightName } from '@zinfer/core';
import { streamedDtype, type SlotEntry } from './stream-plan.js';
import { dtypeBytes } from './step-context.js';

export function shardSlotLayout(graph: Graph, shard: StreamShard, index: number, names: readonly WeightName[], act: FloatDType, matrixDtype: FloatDType): { layout: Map<WeightName, SlotEntry>; bytes: number } {
  const image = shard.image(index);
  if (image.entries.length !== names.length || image.bytes % (shard.size * 4) !== 0) {
    throw new BackendError(`the cooperative fetch image of stream group ${index} does not match the group`, { field: 'stream.shard', expected: `${names.length} weights in ${shard.size} runs of whole f32`, found: `${image.entries.length} weights in ${image.bytes} bytes` });
  }
  const layout = new Map<WeightName, SlotEntry>();
  image.entries.forEach((e, i) => {
    const shape = graph.weights.get(e.name)?.shape;
    if (e.name !== names[i] || !shape || shapeString(shape) !== shapeString(e.shape)) {
      throw new BackendError(`the cooperative fetch image of stream group ${index} has ${e.name} ${shapeString(e.shape)} where the group has ${names[i]}`, { tensor: e.name, field: 'stream.shard' });
    }
    const dtype = streamedDtype(shape, act, matrixDtype);
    if (e.dtype !== dtype || e.offset % 256 !== 0 || e.bytes !== shape.reduce((a, b) => a * b, 1) * dtypeBytes(dtype)) {
      throw new BackendError(`weight ${e.name} is ${e.dtype} at byte ${e.offset} of its cooperative fetch image; this program computes with ${dtype} at 256-byte aligned offsets`, {
        tensor: e.name, field: 'stream.shard', expected: `${dtype}, 256-byte aligned (store the model in the activation dtype, or run without --dp)`, found: `${e.dtype} at ${e.offset}`,
      });
    }
    layout.set(e.name, { offset: e.offset, dtype, shape, bytes: e.bytes });
  });
  return { layout, bytes: image.bytes };
}
