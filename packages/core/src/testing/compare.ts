// Assertions for conformance cases. They throw plain Errors whose message alone says what differed,
// where, and by how much, so a plugin author can act on a failure from any test runner.

/** The largest |value|: the scale tolerances are relative to. */
export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

/**
 * Every element of `actual` within tolerance × max|expected| of `expected` (× 1 when expected is all
 * zeros). `width` lets the message name [row, column]. NaN anywhere fails.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string, width = expected.length): void {
  if (actual.length !== expected.length) {
    const shape = (n: number) => (width > 0 && n % width === 0 ? `${n / width}×${width}` : `${n}`);
    throw new Error(`${what}: output has ${shape(actual.length)} elements, expected ${shape(expected.length)}`);
  }
  const scale = maxAbs(expected) || 1;
  const bound = tolerance * scale;
  let bad = 0;
  let worst = -1;
  let worstDiff = -1;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    if (diff <= bound) continue;
    bad++;
    // NaN compares false everywhere, so it is ranked worst explicitly.
    if (Number.isNaN(diff) || diff > worstDiff) {
      worst = i;
      worstDiff = Number.isNaN(diff) ? Infinity : diff;
    }
  }
  if (bad === 0) return;
  const at = width > 0 ? `[${Math.floor(worst / width)}, ${worst % width}]` : `[${worst}]`;
  throw new Error(
    `${what}: ${bad} of ${expected.length} elements differ by more than ${tolerance} × max|expected| (${fmt(scale)}); ` +
      `worst at ${at}: got ${fmt(actual[worst])}, expected ${fmt(expected[worst])}`,
  );
}

/** The largest |a − b| relative to max|b|: how far apart two outputs are. */
export function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < b.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d / (maxAbs(b) || 1);
}

/** Awaits `fn` and checks it rejects with a BackendError-coded error whose message names every string in `names`. */
export async function expectBackendError(fn: () => Promise<unknown>, what: string, names: readonly string[] = []): Promise<void> {
  let pending: Promise<unknown>;
  try {
    pending = fn();
  } catch (e) {
    throw new Error(`${what}: threw synchronously (${describe(e)}); a Program or KernelBackend method must return a rejected promise`);
  }
  let error: unknown;
  let rejected = false;
  try {
    await pending;
  } catch (e) {
    [error, rejected] = [e, true];
  }
  if (!rejected) throw new Error(`${what}: expected a rejection, but it succeeded`);
  const e = (error ?? {}) as { code?: unknown; message?: unknown };
  // `code` rather than instanceof: a plugin may load a second copy of core (ESM and CJS builds).
  if (e.code !== 'E_BACKEND') throw new Error(`${what}: expected a BackendError (code E_BACKEND), got ${describe(error)}`);
  const message = String(e.message);
  const missing = names.filter((n) => !message.includes(n));
  if (missing.length) throw new Error(`${what}: the error message should name ${missing.join(', ')}; it was: ${message}`);
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name} (code ${String((e as { code?: unknown }).code)}): ${e.message}`;
  return String(e);
}

function fmt(x: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(7)).toString() : String(x);
}
