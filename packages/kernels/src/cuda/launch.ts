// Kernel launch arguments: checked against the kernel's parsed parameter list, then packed into native
// memory as cuLaunchKernel's `void **kernelParams` (an array of pointers, one per parameter, each to the
// parameter's value). The driver copies the values at launch, so one arena serves every launch.
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import type { Dim3, KernelArg } from './gpu.js';
import type { KernelSignature } from './kernel-sources.js';

const MAX_PARAMS = 32;
const SLOT = 8; // every value gets 8 bytes; the driver reads only the parameter's own size from each

/** Throws a BackendError naming the kernel and the argument when a launch does not fit the kernel. */
export function checkLaunch(sig: KernelSignature, grid: Dim3, block: number, args: readonly KernelArg[], sharedBytes = 0, cluster = 1, maxCluster = 1): void {
  const fail = (what: string) => {
    throw new BackendError(`launch of kernel ${sig.name} (${sig.file}): ${what}`, {
      expected: `(${sig.params.map((p) => `${p.kind} ${p.name}`).join(', ')})`,
      found: `(${args.map((a) => (typeof a === 'bigint' ? `0x${a.toString(16)}` : String(a))).join(', ')})`,
    });
  };
  if (args.length !== sig.params.length) fail(`${args.length} arguments for ${sig.params.length} parameters`);
  sig.params.forEach((p, i) => {
    const a = args[i];
    if (p.kind === 'ptr' && typeof a !== 'bigint') fail(`parameter ${p.name} is a pointer; got ${typeof a}`);
    if (p.kind === 'i32' && !(typeof a === 'number' && Number.isInteger(a) && a >= -(2 ** 31) && a < 2 ** 31)) fail(`parameter ${p.name} is an int32; got ${String(a)}`);
    if (p.kind === 'f32' && typeof a !== 'number') fail(`parameter ${p.name} is a float; got ${typeof a}`);
  });
  const { x, y = 1, z = 1 } = grid;
  const dims: [string, number, number][] = [['grid.x', x, 2 ** 31 - 1], ['grid.y', y, 65535], ['grid.z', z, 65535], ['block', block, 1024]];
  for (const [name, v, max] of dims) if (!(Number.isInteger(v) && v >= 1 && v <= max)) fail(`${name} is ${v}; must be an integer in [1, ${max}]`);
  if (!(Number.isInteger(sharedBytes) && sharedBytes >= 0 && sharedBytes <= 48 * 1024)) fail(`dynamic shared memory ${sharedBytes} bytes; at most 48 KiB without an opt-in`);
  if (!(Number.isInteger(cluster) && cluster >= 1 && cluster <= maxCluster)) fail(`cluster of ${cluster} blocks; this GPU takes 1 to ${maxCluster}`);
  if (x % cluster !== 0) fail(`grid.x ${x} is not a multiple of the cluster's ${cluster} blocks`);
}

/** Native memory holding a kernelParams array and its values. Lives for the process (a few hundred bytes). */
export class ParamArena {
  /** Address of the `void *[MAX_PARAMS]` array to pass as kernelParams. */
  readonly params: bigint;
  private readonly values: DataView;

  constructor() {
    const base: bigint = koffi.alloc('uint8_t', MAX_PARAMS * SLOT * 2);
    this.values = new DataView(koffi.view(base, MAX_PARAMS * SLOT));
    this.params = base + BigInt(MAX_PARAMS * SLOT);
    const pointers = new DataView(koffi.view(this.params, MAX_PARAMS * SLOT));
    for (let i = 0; i < MAX_PARAMS; i++) pointers.setBigUint64(i * SLOT, base + BigInt(i * SLOT), true);
  }

  /** Writes the values of a checked launch; returns the kernelParams address. */
  pack(sig: KernelSignature, args: readonly KernelArg[]): bigint {
    if (args.length > MAX_PARAMS) throw new BackendError(`kernel ${sig.name} has more than ${MAX_PARAMS} parameters`);
    sig.params.forEach((p, i) => {
      const a = args[i];
      if (p.kind === 'ptr') this.values.setBigUint64(i * SLOT, BigInt(a), true);
      else if (p.kind === 'i32') this.values.setInt32(i * SLOT, Number(a), true);
      else this.values.setFloat32(i * SLOT, Number(a), true);
    });
    return this.params;
  }
}
