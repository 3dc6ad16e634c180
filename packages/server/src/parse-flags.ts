// Strict parsers for flag values. Number('') is 0 and parseInt('1x') is 1, so both are too lenient for a
// CLI whose runs are compared: a value is either exactly a number or an error naming the flag (commander
// turns InvalidArgumentError into "option '--x <v>' argument 'abc' is invalid. <why>").
import { InvalidArgumentError } from 'commander';

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
// NaN and ±Infinity parse as numbers so that the engine's range checks reject them, naming the field.
const SPECIAL = /^([+-]?Infinity|NaN)$/;
const INTEGER = /^[+-]?\d+$/;

export function parseNumber(s: string): number {
  const t = s.trim();
  if (!DECIMAL.test(t) && !SPECIAL.test(t)) throw new InvalidArgumentError('expected a number.');
  return Number(t);
}

export function parseInteger(s: string): number {
  const t = s.trim();
  const n = Number(t);
  if (!INTEGER.test(t) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected an integer.');
  return n;
}

/** A count of devices or ranks: an integer >= 1. */
export function parseCount(s: string): number {
  const n = parseInteger(s);
  if (n < 1) throw new InvalidArgumentError('expected an integer >= 1.');
  return n;
}

/** "1,2,3" (spaces allowed) → [1, 2, 3]; the engine checks the ids against the vocabulary. */
export function parseTokenIds(s: string): number[] {
  const parts = s.split(',').map((p) => p.trim());
  const bad = parts.find((p) => !/^\d+$/.test(p) || !Number.isSafeInteger(Number(p)));
  if (bad !== undefined) throw new InvalidArgumentError(`expected comma-separated token ids such as 1,2,3; found ${JSON.stringify(bad)}.`);
  return parts.map(Number);
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40 };

/** Bytes: 17179869184, 16GiB, 16G (decimal), 512MiB; an optional trailing B. */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?$/i.exec(s.trim());
  const bytes = m ? Math.floor(Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new InvalidArgumentError('expected a byte count such as 17179869184 or 16GiB.');
  return bytes;
}

/** 'auto' (throughput mode: the engine sizes it from the device), else what `parse` makes of it. */
export function orAuto<T>(parse: (s: string) => T): (s: string) => T | 'auto' {
  return (s) => (s.trim() === 'auto' ? 'auto' : parse(s));
}

/** For repeatable flags (--stop A --stop B). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
