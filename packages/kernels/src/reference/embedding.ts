import { BackendError, type HostTensor } from '@zinfer/core';
import { WeightRows } from './weights.js';

/** out[r] = table[ids[r] + offset] * scale; an id outside the table is an error, never a silent read. */
export function embedding(ids: Int32Array, table: HostTensor, tableName: string, offset: number, scale: number): Float32Array {
  const [vocab, dim] = table.shape;
  const rows = new WeightRows(table, dim);
  const out = new Float32Array(ids.length * dim); // [rows, dim]
  for (let r = 0; r < ids.length; r++) {
    const index = ids[r] + offset;
    if (!(index >= 0 && index < vocab)) {
      throw new BackendError(`embedding: token id ${ids[r]} (row ${r}) is outside table ${tableName}`, {
        tensor: tableName, expected: `ids in [${-offset}, ${vocab - offset})`, found: String(ids[r]),
      });
    }
    const src = rows.load(index * dim);
    const o = r * dim;
    for (let j = 0; j < dim; j++) out[o + j] = src[j] * scale;
  }
  return out;
}
