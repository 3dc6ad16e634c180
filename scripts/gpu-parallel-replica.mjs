#!/usr/bin/env node
// One independent replica of scripts/gpu-parallel-bench.mjs: a single-device engine in its own process
// (its own CUDA context on GPU `device`), driven in lock-step with the other replicas so their
// measurements overlap in time. Protocol, one JSON object a line on stdout:
//   {"ready": true, "loadS"}  after loading; then per run, on each "go" line from stdin,
//   {"run": i, "stepMs", "tokensPerS", "steps"}; finally {"done": true}. A failure: {"error"} and exit 1.
// Argument: one JSON object {backend, device, model, limits, runs: [{seqs, promptLen, newTokens, vocab}]}.
import { createInterface } from 'node:readline';
import { makeBackend, throughput } from './gpu-parallel-common.mjs';

const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const job = JSON.parse(process.argv[2]);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

try {
  const { createEngine } = await import('@zinfer/core');
  const t = performance.now();
  const engine = await createEngine({ model: job.model, backend: await makeBackend(job.backend, job.device), autoStep: false, limits: job.limits });
  say({ ready: true, loadS: (performance.now() - t) / 1000 });
  for (const [i, run] of job.runs.entries()) {
    const line = await lines.next();
    if (line.done || line.value.trim() !== 'go') break;
    say({ run: i, ...(await throughput(engine, run)) });
  }
  await engine.close();
  say({ done: true });
  process.exit(0);
} catch (e) {
  say({ error: `${e?.message ?? e}`.slice(0, 2000) });
  process.exit(1);
}
