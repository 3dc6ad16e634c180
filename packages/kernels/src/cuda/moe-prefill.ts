// How a MoE step of more than 64 rows (a prompt, or a decode batch past the graphs') runs its experts
// (ZINFER_MOE_PREFILL, moePrefill.set):
//   grouped: each local expert's GEMMs over only its routed rows, after the host reads the routing
//            (moe-grouped-gemm.ts: one wait a layer, so never in a captured step);
//   dense:   every local expert over every row in passes (moe-dense.ts): experts ÷ top-k times the routed work;
//   tiles:   each expert's rows in tiles of 8 on CUDA-core kernels, its weights read once a tile (moe-launch.ts);
//   auto:    grouped where the step is not captured, the experts outnumber top-k (else dense computes nothing
//            extra) and they get enough slots each on average (moe-grouped-gemm.ts groupedMinSlots); else
//            dense. The tiles remain the fallback for experts that are not side by side in the activation dtype.
// Steps of 9–64 rows always run dense. Layers on an H200, bf16, ms (bench/results/moe-prefill-h200-s22.json):
//   Mixtral-8x7B (8 experts, top-2): 256 rows tiles 14.7, dense 1.76, grouped 1.12; 2,048 rows 124, 10–11, 3.0.
//   Qwen1.5-MoE (60 experts, top-4): 256 rows tiles 2.43, dense 0.85, grouped 0.56; 2,048 rows 20.7, 5.2, 2.5.
import { EnvChoice } from './env-choice.js';
import { MOE_DENSE_MAX_ROWS } from './moe-dense.js';
import { groupedMinSlots } from './moe-grouped-gemm.js';

export const MOE_PREFILL_MODES = ['auto', 'grouped', 'dense', 'tiles'] as const;
export type MoePrefillMode = (typeof MOE_PREFILL_MODES)[number];
export const moePrefill = new EnvChoice<MoePrefillMode>(MOE_PREFILL_MODES, 'auto', 'ZINFER_MOE_PREFILL');

/** The path of a step of `rows` (> 8) rows over `nLocal` local experts of top-`topK` routing. */
export function moeStepPath(rows: number, nLocal: number, topK: number, capturing: boolean): 'grouped' | 'dense' | 'tiles' {
  if (rows <= MOE_DENSE_MAX_ROWS) return 'dense';
  const mode = moePrefill.get();
  if (mode === 'dense' || mode === 'tiles') return mode;
  if (capturing) return 'dense';
  if (mode === 'grouped') return 'grouped';
  return nLocal > topK && rows * topK >= groupedMinSlots(nLocal) * nLocal ? 'grouped' : 'dense';
}
