// Weights of linears are stored packed in panels of 8 rows (the layout asm/linear.ts reads linearly):
// panel p holds rows 8p..8p+7; for each group g of 8 inputs, the 8 rows' elements 8g..8g+7 side by
// side. Rows past N and inputs past K are zero. Same dtype, same bytes per element: a reordering, not a
// widening (padding adds under 8 rows and 8 columns).
import type { FloatDType, HostTensor } from '@zinfer/core';
import type { WasmHeap } from './heap.js';

export const PANEL = 8;

/** Bytes of a packed [N, K] weight. */
export function packedBytes(dtype: FloatDType, N: number, K: number): number {
  return Math.ceil(N / PANEL) * panelBytes(dtype, K);
}

/** Bytes of one panel (8 rows) of a packed [N, K] weight. */
export function panelBytes(dtype: FloatDType, K: number): number {
  return PANEL * Math.ceil(K / 8) * 8 * (dtype === 'f32' ? 4 : 2);
}

/** Writes tensor [N, K] packed at byte offset `ptr` of the heap (which must already hold packedBytes). */
export function packWeight(heap: WasmHeap, ptr: number, t: HostTensor): void {
  const [N, K] = t.shape;
  const wide = t.dtype === 'f32';
  const n8 = Math.ceil(K / 8);
  const panels = Math.ceil(N / PANEL);
  // 32-bit words per 8-element chunk, when chunks of the source start on word boundaries.
  const perWord = wide ? 1 : 2;
  const aligned = t.data.byteOffset % 4 === 0 && K % 8 === 0 && (wide || K % 2 === 0);
  if (aligned) {
    const src = new Int32Array(t.data.buffer, t.data.byteOffset, (t.data.length / perWord) | 0);
    const dst = heap.i32;
    const chunk = 8 / perWord;
    const rowWords = K / perWord;
    let d = ptr >>> 2;
    for (let p = 0; p < panels; p++) {
      for (let g = 0; g < n8; g++) {
        for (let s = 0; s < PANEL; s++) {
          const row = p * PANEL + s;
          if (row >= N) {
            dst.fill(0, d, d + chunk);
          } else {
            const at = row * rowWords + g * chunk;
            for (let i = 0; i < chunk; i++) dst[d + i] = src[at + i];
          }
          d += chunk;
        }
      }
    }
    return;
  }
  // Any shape or alignment: element by element.
  const dst = wide ? heap.f32 : heap.u16;
  const src = t.data;
  let d = wide ? ptr >>> 2 : ptr >>> 1;
  for (let p = 0; p < panels; p++) {
    for (let g = 0; g < n8; g++) {
      for (let s = 0; s < PANEL; s++) {
        const row = p * PANEL + s;
        for (let e = 0; e < 8; e++) {
          const k = g * 8 + e;
          dst[d++] = row < N && k < K ? src[row * K + k] : 0;
        }
      }
    }
  }
}
