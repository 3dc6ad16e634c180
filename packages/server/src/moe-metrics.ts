// Mixture-of-Experts routing statistics on /metrics, read from the engine at scrape time (never per
// step, so serving pays nothing for them): tokens routed per expert per MoE layer, how unbalanced each
// layer is, and which expert group holds each expert when the server can re-plan the placement.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Engine } from '@zinfer/core';
import type { MoeReplanner } from './moe-replan.js';

/** A scrape waits this long for the counts (a rank busy with a long step answers after it); then it shows the last ones. */
const READ_TIMEOUT_MS = 1000;

export function registerMoeMetrics(registry: Registry, engine: () => Engine | null, moe: () => MoeReplanner | undefined): void {
  const registers = [registry];
  let last: Float64Array[] = [];
  const read = async (): Promise<Float64Array[]> => {
    const e = engine();
    if (!e?.expertLoad) return last;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), READ_TIMEOUT_MS)));
    try {
      last = (await Promise.race([e.expertLoad(), late])) ?? last;
    } catch {
      // A failed read (a broken rank) leaves the last counts; the request paths report the failure.
    } finally {
      clearTimeout(timer);
    }
    return last;
  };
  // One read per scrape serves all three metrics (prom-client collects them one after another).
  let pending: Promise<Float64Array[]> | null = null;
  const shared = () => (pending ??= read().finally(() => setImmediate(() => (pending = null))));

  new Counter({
    name: 'zinfer_moe_expert_tokens_total', help: 'Tokens routed to each expert of each MoE layer (a token counts once per expert of its top-k)', labelNames: ['layer', 'expert'], registers,
    async collect() {
      const load = await shared();
      this.reset();
      load.forEach((l, layer) => l.forEach((n, expert) => this.inc({ layer, expert }, n)));
    },
  });
  new Gauge({
    name: 'zinfer_moe_expert_imbalance', help: 'Per MoE layer: tokens of the busiest expert over the mean expert (1 = balanced)', labelNames: ['layer'], registers,
    async collect() {
      const load = await shared();
      this.reset();
      load.forEach((l, layer) => this.set({ layer }, imbalance(l)));
    },
  });
  new Gauge({
    name: 'zinfer_moe_expert_group', help: 'Expert group (rank, or ranks slicing it) holding each expert under the current placement', labelNames: ['layer', 'expert', 'placement'], registers,
    async collect() {
      const load = await shared();
      const m = moe();
      this.reset();
      if (!m || !load.length) return;
      const placement = m.placement.name;
      m.owners(load.map((l) => l.length)).forEach((o, layer) => o.forEach((group, expert) => this.set({ layer, expert, placement }, group)));
    },
  });
}

/** The busiest expert's count over the mean (0 while no token was routed). */
function imbalance(load: Float64Array): number {
  const sum = load.reduce((a, b) => a + b, 0);
  return sum > 0 ? Math.max(...load) / (sum / load.length) : 0;
}
