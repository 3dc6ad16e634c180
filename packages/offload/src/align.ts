// Sizes and offsets of the offload file and its read buffers. Direct I/O (O_DIRECT) needs file offsets,
// lengths and buffer addresses on logical-block boundaries; 4096 covers every block size in use.
export const ALIGN = 4096;

/** Tensors inside a group region start on this boundary, so typed-array views over them are legal. */
export const TENSOR_ALIGN = 64;

export function alignUp(n: number, a = ALIGN): number {
  return Math.ceil(n / a) * a;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** "0-3, 7" for layer numbers. */
export function formatLayers(layers: readonly number[]): string {
  if (layers.length === 0) return 'none';
  const parts: string[] = [];
  let start = layers[0];
  let prev = start;
  for (const l of [...layers.slice(1), NaN]) {
    if (l === prev + 1) {
      prev = l;
      continue;
    }
    parts.push(start === prev ? `${start}` : `${start}-${prev}`);
    start = prev = l;
  }
  return parts.join(', ');
}
