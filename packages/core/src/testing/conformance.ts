// The conformance suite for KernelBackend plugins, framework-agnostic: a list of named async checks that
// any test runner can register (uvu: `for (const c of cases) test(c.name, c.run)`).
import type { KernelBackend } from '../contracts.js';
import { argmaxCases } from './argmax-cases.js';
import { contractCases } from './contract-cases.js';
import { DEFAULT_TOLERANCE, type ConformanceCase, type ConformanceOptions, type Harness } from './harness.js';
import { knownAnswerCases } from './known-answers.js';
import { knownPositionalCases } from './known-positional.js';
import { kvCacheCases } from './kv-cache-cases.js';
import { oracleCases } from './oracle-cases.js';
import { sampleCases } from './sample-cases.js';

/**
 * The cases a backend must pass: contract checks, known answers of every op, every op against
 * `oracle` on random odd shapes and all weight dtypes (only when an oracle is given), and the KV-cache
 * contract on a 2-layer Llama-like model, runArgmax (where a program has it) against the greedy sampler, and runSample against TokenFilter's pick. Numbers match when |got − expected| ≤ tolerance × max|expected|
 * over the compared output (default tolerance 1e-4).
 */
export function kernelBackendConformance(backend: KernelBackend, opts: ConformanceOptions = {}): ConformanceCase[] {
  const tolerance = opts.tolerance ?? DEFAULT_TOLERANCE;
  if (!(tolerance > 0)) throw new RangeError(`conformance tolerance must be > 0, found ${tolerance}`);
  const seed = opts.seed ?? 1;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`conformance seed must be a safe integer, found ${seed}`);
  const h: Harness = { backend, oracle: opts.oracle ?? null, tolerance, seed };
  return [...contractCases(h), ...knownAnswerCases(h), ...knownPositionalCases(h), ...oracleCases(h), ...kvCacheCases(h), ...argmaxCases(h), ...sampleCases(h)].map((c) => ({
    name: `${backend.name}: ${c.name}`,
    run: c.run,
  }));
}
