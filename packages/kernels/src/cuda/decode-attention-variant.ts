// Which compiled variant of the decode attention (attn_decode in cuda/attention.cu) a step launches. Both
// agree within rounding (not bit for bit: some greedy ids of a 64-row random-weight step differ). `pipe`
// loads the next round of K/V (and block-table entries) before it uses the current one, and is the
// default: on an H100 the graphed 64-row step took 14.52 ms with it against 15.63 with v1 (H200: 11.8 vs
// 14.3). Selected by ZINFER_DECODE_ATTENTION, or setDecodeAttentionVariant between steps (a program with
// CUDA graphs must drop them to see a change: resetGraphs), so the bench times both.
import { EnvChoice } from './env-choice.js';

export const DECODE_ATTENTION_VARIANTS = ['v1', 'pipe'] as const;
export type DecodeAttentionVariant = (typeof DECODE_ATTENTION_VARIANTS)[number];

const variant = new EnvChoice(DECODE_ATTENTION_VARIANTS, 'pipe', 'ZINFER_DECODE_ATTENTION');
/** The variant named by an environment value (unset or empty: pipe). */
export const parseDecodeAttentionVariant = (value: string | undefined, field?: string): DecodeAttentionVariant => variant.parse(value, field);
export const decodeAttentionVariant = (): DecodeAttentionVariant => variant.get();
export const setDecodeAttentionVariant = (v: DecodeAttentionVariant): void => variant.set(v);

/**
 * The entry point for `lanes` lanes a position in the activation dtype, reading a cache in that dtype or
 * fp8: attn_decode16_f16, attn_decode16p_f16, attn_decode8_f16_e4m3; `wide` (pipe only, 16 elements a lane
 * of an f16/bf16 cache): attn_decode8w_f16. The f32 parity mode has no pipelined entries (cuda/attention.cu):
 * it takes v1's.
 */
export function decodeAttentionKernel(lanes: number, act: string, v: DecodeAttentionVariant = variant.get(), fp8 = false, wide = false): string {
  const pipe = v === 'pipe' && act !== 'f32';
  return `attn_decode${lanes}${wide ? 'w' : pipe ? 'p' : ''}_${act}${fp8 ? '_e4m3' : ''}`;
}
