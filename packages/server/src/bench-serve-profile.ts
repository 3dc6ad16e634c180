#!/usr/bin/env node
// Where a serving step's time goes (a local profiling script, not a test): the embedded default model on
// the cpu backend in this process, N concurrent requests stepped by hand, as `npm run bench:serve`
// batches them. For the decode steps: wall time per step, split into program.run (each kind of kernel
// node: linears by weight, attention, norms, ...) and the engine's work outside it (sampling, the
// scheduler, pushing tokens to streams). WebSocket framing is not in it: compare with bench:serve's
// inter-token latency for that. Usage (from packages/server):
//   node --import tsx src/bench-serve-profile.ts [--streams 256] [--tokens 32] [--temperature 0.8] [--rounds 3] [--threads N] [--model DIR] [--no-fma]
// (built too: node dist/bench-serve-profile.js, which the GPU machines' CPUs run through scripts/gpu-serve.sh).
import { parseArgs } from 'node:util';
import { createEngine, type Engine } from '@zinfer/core';
import { cpuBackend } from '@zinfer/kernels/cpu';
import { defaultModelDir } from './default-model.js';

const { values: a } = parseArgs({
  options: {
    streams: { type: 'string', default: '256' },
    tokens: { type: 'string', default: '32' },
    temperature: { type: 'string', default: '0.8' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string' },
    model: { type: 'string' },
    'no-fma': { type: 'boolean', default: false },
  },
});

type Profile = Map<string, { ms: number; calls: number }>;
/** The parts of the cpu program this script reads (CpuProgram; the engine holds it privately). */
interface Profiled {
  profile: Profile | null;
  run(batch: unknown): Promise<Float32Array>;
  runArgmax?(batch: unknown): Promise<Int32Array>;
  runSample?(batch: unknown, rows: unknown): Promise<Int32Array>;
}

async function round(engine: Engine, program: Profiled, streams: number, tokens: number, temperature: number): Promise<void> {
  const requests = Array.from({ length: streams }, (_, i) => engine.generate({ inputIds: [5, 6, 7, 8, 9, 10, 11, 12], maxTokens: tokens, temperature, seed: i, ignoreEos: true }));
  let runMs = 0;
  for (const name of ['run', 'runArgmax', 'runSample'] as const) {
    const f = program[name]?.bind(program) as ((...args: unknown[]) => Promise<unknown>) | undefined;
    if (!f) continue;
    (program as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      const t0 = performance.now();
      try {
        return await f(...args);
      } finally {
        runMs += performance.now() - t0;
      }
    };
  }
  await engine.step(); // the prompts
  program.profile = new Map();
  runMs = 0;
  const t0 = performance.now();
  let steps = 0;
  for (let done = 0; done < streams; steps++) done += (await engine.step()).finished;
  const stepMs = (performance.now() - t0) / steps;
  await Promise.all(requests.map((r) => r.result));
  const rows = [...program.profile].sort((x, y) => y[1].ms - x[1].ms).map(([k, v]) => `  ${(v.ms / steps).toFixed(2).padStart(7)} ms  ${k}`);
  console.log(`${streams} streams, temperature ${temperature}: ${steps} decode steps of ${stepMs.toFixed(1)} ms (${((streams * steps) / (stepMs * steps / 1e3)).toFixed(0)} tok/s); the program ${(runMs / steps).toFixed(1)} ms, outside it (sampling, scheduler, streams) ${(stepMs - runMs / steps).toFixed(1)} ms; per step:`);
  console.log(rows.join('\n'));
  program.profile = null;
}

async function main(): Promise<void> {
  const streams = Number(a.streams);
  const engine = await createEngine({
    model: a.model ?? defaultModelDir(), backend: cpuBackend({ ...(a['no-fma'] ? { fma: false } : {}), ...(a.threads ? { threads: Number(a.threads) } : {}) }), autoStep: false,
    limits: { maxBatchTokens: 2048, maxSequences: streams, kvCacheBytes: 512 * 2 ** 20 },
  });
  try {
    const program = (engine as unknown as { program: Profiled }).program;
    if (!('profile' in program)) throw new Error('the engine\'s program is not a cpu program with a profile');
    for (let r = 0; r < Number(a.rounds); r++) await round(engine, program, streams, Number(a.tokens), Number(a.temperature));
  } finally {
    await engine.close();
  }
}

void main();
