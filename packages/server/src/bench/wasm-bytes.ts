// The pieces of the WebAssembly binary format the hand-assembled probe modules need (a few hundred bytes
// each, so no toolchain): unsigned LEB128, a section with its length, a length-prefixed name.

export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export const section = (id: number, payload: number[]): number[] => [id, ...leb(payload.length), ...payload];

export const name = (s: string): number[] => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
