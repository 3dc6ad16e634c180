// Which compiled variant of the decode attention (attn_decode in cuda/attention.cu) a step launches. Both
// agree within rounding (not bit for bit: some greedy ids of a 64-row random-weight step differ). `pipe`
// loads the next round of K/V (and block-table entries) before it uses the current one: on an H100 the
// graphed 64-row step took 14.52 ms with it against 15.63 with v1 (H200: 11.8 vs 14.3). Over an fp8 cache,
// whose loop does its products in f16 pairs and is bound by latency, v1 is faster: without the next round in
// registers an SM holds more of its blocks (cuda/attention.cu: 8 at 64 registers; graphed 7B 64-row fp8 step
// on an H200 7.16–7.27 ms against pipe's 7.72–7.80; PERF-NOTES, session 24). `auto` (the default) takes pipe
// for f16/bf16 caches and v1 for fp8. Selected by
// ZINFER_DECODE_ATTENTION, or setDecodeAttentionVariant between steps (a program with CUDA graphs must drop
// them to see a change: resetGraphs), so the bench times both.
import { EnvChoice } from './env-choice.js';

export const DECODE_ATTENTION_VARIANTS = ['auto', 'v1', 'pipe'] as const;
/** The two entry points `auto` chooses between: what the bench times against each other. */
export const DECODE_ATTENTION_ENTRIES = ['v1', 'pipe'] as const satisfies readonly DecodeAttentionVariant[];
export type DecodeAttentionVariant = (typeof DECODE_ATTENTION_VARIANTS)[number];

const variant = new EnvChoice(DECODE_ATTENTION_VARIANTS, 'auto', 'ZINFER_DECODE_ATTENTION');
/** The variant named by an environment value (unset or empty: auto). */
export const parseDecodeAttentionVariant = (value: string | undefined, field?: string): DecodeAttentionVariant => variant.parse(value, field);
export const decodeAttentionVariant = (): DecodeAttentionVariant => variant.get();
export const setDecodeAttentionVariant = (v: DecodeAttentionVariant): void => variant.set(v);

/** Whether variant `v` launches the pipelined entry (over an fp8 cache when `fp8`). */
export const pipelined = (v: DecodeAttentionVariant, fp8: boolean): boolean => v === 'pipe' || (v === 'auto' && !fp8);

/**
 * The entry point for `lanes` lanes a position in the activation dtype, reading a cache in that dtype or
 * fp8: attn_decode16_f16, attn_decode16p_f16, attn_decode8_f16_e4m3; `wide` (pipe only, 16 elements a lane
 * of an f16/bf16 cache): attn_decode8w_f16. The f32 parity mode has no pipelined entries (cuda/attention.cu):
 * it takes v1's.
 */
export function decodeAttentionKernel(lanes: number, act: string, v: DecodeAttentionVariant = variant.get(), fp8 = false, wide = false): string {
  const pipe = pipelined(v, fp8) && act !== 'f32';
  return `attn_decode${lanes}${wide ? 'w' : pipe ? 'p' : ''}_${act}${fp8 ? '_e4m3' : ''}`;
}
