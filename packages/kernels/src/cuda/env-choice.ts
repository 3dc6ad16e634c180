// One of a fixed set of names, read from an environment variable or a setter (the kernel-variant switches:
// ZINFER_GEMV, ZINFER_GEMV_NARROW, ZINFER_DECODE_ATTENTION, ZINFER_L2_PREFETCH).
import { BackendError } from '@zinfer/core';

/** `value` if it is one of `choices`; unset or empty: `fallback`; else a BackendError naming `field`. */
export function parseChoice<T extends string>(value: string | undefined, choices: readonly T[], fallback: T, field: string): T {
  if (value === undefined || value === '') return fallback;
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new BackendError(`${field} is '${value}'; it takes ${choices.join(', ')}`, { field, expected: choices.join(' | '), found: value });
}

/** A switch read once from `env` (fallback when unset), then changed by set() (the bench's A/B; tests). */
export class EnvChoice<T extends string> {
  private value: T;

  constructor(readonly choices: readonly T[], readonly fallback: T, readonly env: string) {
    this.value = this.parse(process.env[env]);
  }

  parse(value: string | undefined, field = this.env): T {
    return parseChoice(value, this.choices, this.fallback, field);
  }

  get(): T {
    return this.value;
  }

  set(value: T): void {
    this.value = this.parse(value, `${this.env} (set)`);
  }
}
