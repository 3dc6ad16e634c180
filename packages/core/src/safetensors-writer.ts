// Writes safetensors files, mainly so tests can build checkpoints. Output follows the reference layout:
// header padded with spaces to 8-byte alignment (so the data area is aligned too), tensors contiguous
// in insertion order. Storage bytes are written as they are in memory, i.e. a little-endian host.

import fs from 'node:fs';
import { SafetensorsError } from './errors.js';
import { SAFETENSORS_DTYPE } from './safetensors.js';
import { numel, shapeString, type HostTensor } from './tensor.js';

export function writeSafetensors(path: string, tensors: Record<string, HostTensor>, metadata?: Record<string, string>): void {
  fs.writeFileSync(path, encodeSafetensors(tensors, metadata));
}

export function encodeSafetensors(tensors: Record<string, HostTensor>, metadata?: Record<string, string>): Uint8Array {
  const header: [string, unknown][] = metadata ? [['__metadata__', metadata]] : [];
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = tensorBytes(name, t);
    header.push([name, { dtype: SAFETENSORS_DTYPE[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] }]);
    parts.push(bytes);
    offset += bytes.length;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  // fromEntries, not assignment: a tensor named "__proto__" must stay a key.
  return frameSafetensors(new TextEncoder().encode(JSON.stringify(Object.fromEntries(header))), data);
}

/** Length prefix + header padded with spaces to a multiple of 8 + data. */
export function frameSafetensors(header: Uint8Array, data: Uint8Array): Uint8Array {
  const padded = Math.ceil(header.length / 8) * 8;
  const out = new Uint8Array(8 + padded + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(header, 8);
  out.fill(0x20, 8 + header.length, 8 + padded);
  out.set(data, 8 + padded);
  return out;
}

function tensorBytes(name: string, t: HostTensor): Uint8Array {
  if (name === '__metadata__') {
    throw new SafetensorsError('a tensor cannot be named __metadata__', {
      tensor: name, expected: 'any other name', found: name,
    });
  }
  const storage = t.dtype === 'f32' ? Float32Array : Uint16Array;
  if (!(t.data instanceof storage) || t.data.length !== numel(t.shape)) {
    throw new SafetensorsError('tensor storage does not match its dtype and shape', {
      tensor: name, expected: `${storage.name} of ${numel(t.shape)} elements for ${t.dtype} ${shapeString(t.shape)}`,
      found: `${t.data.constructor.name} of ${t.data.length} elements`,
    });
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}
