// Routing statistics across the programs an engine runs. A relaunch (re-planned expert placement) starts
// a fresh program whose counters start at zero, so the engine keeps what the earlier programs counted:
// /metrics counters must never go down.
import type { Program } from './contracts.js';

export class ExpertLoadTotals {
  /** What disposed programs counted, per MoE layer. */
  private base: Float64Array[] = [];

  /** Tokens routed per expert per MoE layer so far; null when the backend keeps no statistics. */
  async read(program: Program): Promise<Float64Array[] | null> {
    const now = program.expertLoad ? await program.expertLoad() : null;
    if (!now) return this.base.length ? this.base.map((l) => l.slice()) : null;
    return now.map((l, i) => add(l, this.base[i]));
  }

  /** Folds a program's counts in before the engine disposes it. */
  async retire(program: Program): Promise<void> {
    this.base = (await this.read(program)) ?? [];
  }
}

function add(a: Float64Array, b: Float64Array | undefined): Float64Array {
  const out = a.slice();
  if (b) for (let e = 0; e < Math.min(a.length, b.length); e++) out[e] += b[e];
  return out;
}
