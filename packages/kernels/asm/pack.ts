// Repacking a linear's weight rows into the panel layout linear.ts reads (see src/cpu/pack.ts): streamed
// weights arrive row-major each step, are staged into the shared memory a few panels at a time, and are
// reordered here with vector moves (an 8-element group is 16 bytes in f16/bf16, 32 in f32), about as fast
// as a memcpy, where a JavaScript loop manages a tenth of that.
import { argI, argP, shareStart } from './common';

/**
 * args: 0 src (rows [rows, K] in the stored dtype, contiguous), 1 dst (those rows' panels, packed), 2 rows,
 * 3 K, 4 bytes per element (2 or 4). Panels are split over the threads; rows past `rows` (the last panel's
 * padding) and inputs past K are written as zeros.
 */
export function k_pack_panels(args: usize, tid: i32, nt: i32): void {
  const src = argP(args, 0);
  const dst = argP(args, 1);
  const rows = argI(args, 2);
  const K = argI(args, 3);
  const eb = <usize>argI(args, 4);
  const n8 = (K + 7) >> 3;
  const full = K >> 3;
  const group = eb << 3; // bytes of 8 elements
  const rowBytes = <usize>K * eb;
  const hi = shareStart((rows + 7) >> 3, tid + 1, nt);
  for (let p = shareStart((rows + 7) >> 3, tid, nt); p < hi; p++) {
    let d = dst + <usize>p * <usize>n8 * 8 * group;
    for (let g = 0; g < n8; g++) {
      for (let s = 0; s < 8; s++) {
        const row = p * 8 + s;
        const from = src + <usize>row * rowBytes + <usize>g * group;
        if (row >= rows) {
          memory.fill(d, 0, group);
        } else if (g < full) {
          v128.store(d, v128.load(from));
          if (eb == 4) v128.store(d, v128.load(from, 16), 16);
        } else {
          const n = <usize>(K - (g << 3)) * eb;
          memory.copy(d, from, n);
          memory.fill(d + n, 0, group - n);
        }
        d += group;
      }
    }
  }
}
