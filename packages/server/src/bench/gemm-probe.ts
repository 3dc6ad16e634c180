// The reference GEMM rate: numpy's float32 matmul through python3 (bench/probes/reference-gemm.py), the
// arithmetic peer that prefill is compared with, measured twice:
// - reference: as this machine's environment configures numpy (OPENBLAS_* variables as set; e.g. a CI
//   image pinning OPENBLAS_CORETYPE=Haswell runs the AVX2 kernel) — what numpy does here, the issue's peer;
// - unrestricted: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so OpenBLAS picks its own kernel for the
//   CPU (AVX-512 where it has it): the hardware's native-code rate, beyond any 128-bit wasm loop.
// Where the environment sets neither variable the two are one configuration, measured once.
// Absent python3 or numpy, a rate is null and the detail says why.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { oneLine, parseJson } from './dram-probe.js';

export interface GemmRun {
  /** Best run (null when skipped). */
  gflops: number | null;
  medianGflops: number | null;
  /** numpy and BLAS versions, the OpenBLAS core type it ran, threads, the OPENBLAS_* settings; or why it was skipped. */
  detail: string;
}

export interface GemmProbeResult {
  /** numpy as the environment configures it. */
  reference: GemmRun;
  /** numpy with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset. */
  unrestricted: GemmRun;
}

const N = 2048;
const RUNS = 5;
const PINNING = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'] as const;

export function gemmProbe(root: string): GemmProbeResult {
  const script = join(root, 'bench', 'probes', 'reference-gemm.py');
  if (!existsSync(script)) {
    const skipped = { gflops: null, medianGflops: null, detail: `skipped: no probe script at ${script}` };
    return { reference: skipped, unrestricted: skipped };
  }
  const pinned = PINNING.filter((k) => process.env[k] !== undefined);
  const settings = pinned.length ? pinned.map((k) => `${k}=${process.env[k]}`).join(' ') : 'no OPENBLAS_CORETYPE/L2_SIZE set';
  const reference = runProbe(script, { ...process.env }, `environment as set (${settings})`);
  if (!pinned.length) return { reference, unrestricted: { ...reference, detail: `${reference.detail} (the same configuration)` } };
  const env = { ...process.env };
  for (const k of PINNING) delete env[k];
  return { reference, unrestricted: runProbe(script, env, `${pinned.join('/')} unset`) };
}

function runProbe(script: string, env: NodeJS.ProcessEnv, how: string): GemmRun {
  const python = process.env.PYTHON || 'python3';
  const r = spawnSync(python, [script, String(N), String(RUNS)], { encoding: 'utf8', env, timeout: 300_000 });
  const skip = (why: string): GemmRun => ({ gflops: null, medianGflops: null, detail: `skipped: ${why}` });
  if (r.error) return skip(`${python} is not available (${r.error.message})`);
  const out = parseJson(r.stdout);
  if (r.status !== 0 || !out) return skip(`the probe failed (${oneLine(r.stderr || `exit ${r.status}`)})`);
  if (typeof out.skipped === 'string') return skip(out.skipped);
  const info = [`numpy ${String(out.numpy)}`, out.blas, out.corename && `core ${String(out.corename)}`, out.blas_threads && `${String(out.blas_threads)} threads`].filter(Boolean).join(', ');
  return { gflops: Number(out.gflops), medianGflops: Number(out.median_gflops), detail: `sgemm ${N}³ f32, best of ${RUNS}; ${info}; ${how}` };
}
