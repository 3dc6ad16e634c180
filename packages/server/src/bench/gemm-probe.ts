// The reference GEMM rate: numpy's float32 matmul through python3 (bench/probes/reference-gemm.py), the
// arithmetic peer that prefill is compared with. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for
// this one command: some machines set them for old OpenBLAS builds, and they pin a current numpy to a
// slower kernel. Absent python3 or numpy, the rate is null and the note says why.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { oneLine, parseJson } from './dram-probe.js';

export interface GemmProbeResult {
  /** Best run (null when skipped). */
  gflops: number | null;
  medianGflops: number | null;
  /** numpy and BLAS versions, the OpenBLAS core type it ran, threads; or why it was skipped. */
  detail: string;
}

const N = 2048;
const RUNS = 5;

export function gemmProbe(root: string): GemmProbeResult {
  const script = join(root, 'bench', 'probes', 'reference-gemm.py');
  if (!existsSync(script)) return { gflops: null, medianGflops: null, detail: `skipped: no probe script at ${script}` };
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const python = process.env.PYTHON || 'python3';
  const r = spawnSync(python, [script, String(N), String(RUNS)], { encoding: 'utf8', env, timeout: 300_000 });
  if (r.error) return { gflops: null, medianGflops: null, detail: `skipped: ${python} is not available (${r.error.message})` };
  const out = parseJson(r.stdout);
  if (r.status !== 0 || !out) return { gflops: null, medianGflops: null, detail: `skipped: the probe failed (${oneLine(r.stderr || `exit ${r.status}`)})` };
  if (typeof out.skipped === 'string') return { gflops: null, medianGflops: null, detail: `skipped: ${out.skipped}` };
  const info = [`numpy ${String(out.numpy)}`, out.blas, out.corename && `core ${String(out.corename)}`, out.blas_threads && `${String(out.blas_threads)} threads`].filter(Boolean).join(', ');
  return { gflops: Number(out.gflops), medianGflops: Number(out.median_gflops), detail: `sgemm ${N}³ f32, best of ${RUNS}; ${info}; OPENBLAS_CORETYPE/L2_SIZE unset` };
}
