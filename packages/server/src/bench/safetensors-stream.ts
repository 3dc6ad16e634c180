// Writes a safetensors file tensor by tensor and chunk by chunk, so a checkpoint of any size is written
// in bounded memory (encodeSafetensors from @zinfer/core builds the whole file in memory first). Same
// layout as core's writer: header padded with spaces to 8 bytes, tensors contiguous in the given order.
import { closeSync, openSync, writeSync } from 'node:fs';
import { SAFETENSORS_DTYPE, type FloatDType } from '@zinfer/core';

export interface StreamedTensor {
  name: string;
  shape: number[];
}

/** Fills `out` with the tensor's elements [start, start + out.length). */
export type ChunkFiller = (tensor: StreamedTensor, out: Float32Array | Uint16Array, start: number) => void;

const CHUNK_ELEMENTS = 4 * 2 ** 20;

export function elementBytes(dtype: FloatDType): number {
  return dtype === 'f32' ? 4 : 2;
}

export function tensorBytes(t: StreamedTensor, dtype: FloatDType): number {
  return t.shape.reduce((a, b) => a * b, 1) * elementBytes(dtype);
}

/** Writes one safetensors file holding `tensors` (all of `dtype`); returns its size in bytes. */
export function writeSafetensorsStreaming(path: string, dtype: FloatDType, tensors: readonly StreamedTensor[], fill: ChunkFiller, metadata: Record<string, string> = { format: 'pt' }): number {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = tensorBytes(t, dtype);
    header[t.name] = { dtype: SAFETENSORS_DTYPE[dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);

  const fd = openSync(path, 'w');
  try {
    writeAll(fd, head);
    const chunk = dtype === 'f32' ? new Float32Array(CHUNK_ELEMENTS) : new Uint16Array(CHUNK_ELEMENTS);
    for (const t of tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      for (let start = 0; start < n; start += CHUNK_ELEMENTS) {
        const part = chunk.subarray(0, Math.min(CHUNK_ELEMENTS, n - start));
        fill(t, part, start);
        writeAll(fd, new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
      }
    }
  } finally {
    closeSync(fd);
  }
  return head.length + offset;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}
