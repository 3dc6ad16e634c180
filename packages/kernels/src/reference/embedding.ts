import { BackendError, type HostTensor } from '@zinfer/core';
import { WeightRows } from './weights.js';

/**
 * out[r] = table[ids[r] + offset] * scale; an id outside the table is an error, never a silent read.
 * With `shardStart` (a vocab-parallel shard holding rows [shardStart, shardStart + tableRows)), ids
 * outside the shard give zero rows: the other ranks' shards hold them.
 */
export function embedding(ids: Int32Array, table: HostTensor, tableName: string, offset: number, scale: number, shardStart?: number): Float32Array {
  const [vocab, dim] = table.shape;
  const rows = new WeightRows(table, dim);
  const out = new Float32Array(ids.length * dim); // [rows, dim]
  for (let r = 0; r < ids.length; r++) {
    const index = ids[r] + offset - (shardStart ?? 0);
    if (shardStart !== undefined && !(index >= 0 && index < vocab)) continue;
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
