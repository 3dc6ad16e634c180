/** 1536 → "1536 B", 3 MiB → "3.0 MiB", 2 GiB → "2.00 GiB": sizes in error messages. */
export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${n} B`;
}
