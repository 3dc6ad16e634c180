// One of a fixed set of names, read from an environment variable or a setter (the kernel-variant switches:
// ZINFER_GEMV, ZINFER_GEMV_NARROW, ZINFER_DECODE_ATTENTION, ZINFER_L2_PREFETCH).
import { BackendError } from '@zinfer/core';

/** `value` if it is one of `choices`; unset or empty: `fallback`; else a BackendError naming `field`. */
export function parseChoice<T extends string>(value: string | undefined, choices: readonly T[], fallback: T, field: string): T {
  if (value === undefined || value === '') return fallback;
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new BackendError(`${field} is '${value}'; it takes ${choices.join(', ')}`, { field, expected: choices.join(' | '), found: value });
}
