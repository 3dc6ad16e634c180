// Which compiled variant of the decode attention (attn_decode in cuda/attention.cu) a step launches. Both
// agree within rounding (not bit for bit: some greedy ids of a 64-row random-weight step differ); `pipe` loads the next round of K/V (and block-table entries) before it uses
// the current one, and is the default: on an H200 its batch-64 decode attention read K/V at 3,806 GB/s
// against v1's 2,525 (graphed 64-row step 11.8 vs 14.3 ms). Selected by ZINFER_DECODE_ATTENTION, or
// setDecodeAttentionVariant between steps (a program with CUDA graphs must drop them to see a change:
// resetGraphs), so the bench times both.
import { parseChoice } from './env-choice.js';

export const DECODE_ATTENTION_VARIANTS = ['v1', 'pipe'] as const;
export type DecodeAttentionVariant = (typeof DECODE_ATTENTION_VARIANTS)[number];

/** The variant named by an environment value (unset or empty: pipe). */
export function parseDecodeAttentionVariant(value: string | undefined, field = 'ZINFER_DECODE_ATTENTION'): DecodeAttentionVariant {
  return parseChoice(value, DECODE_ATTENTION_VARIANTS, 'pipe', field);
}

let current: DecodeAttentionVariant = parseDecodeAttentionVariant(process.env.ZINFER_DECODE_ATTENTION);

export function decodeAttentionVariant(): DecodeAttentionVariant {
  return current;
}

export function setDecodeAttentionVariant(v: DecodeAttentionVariant): void {
  current = parseDecodeAttentionVariant(v, 'decode attention variant');
}

/**
 * The entry point for `lanes` lanes a position in the activation dtype, reading a cache in that dtype or
 * fp8: attn_decode16_f16, attn_decode16p_f16, attn_decode16_f16_e4m3. The f32 parity mode has no pipelined
 * entries (cuda/attention.cu): it takes v1's.
 */
export function decodeAttentionKernel(lanes: number, act: string, variant: DecodeAttentionVariant = current, fp8 = false): string {
  const pipe = variant === 'pipe' && act !== 'f32';
  return `attn_decode${lanes}${pipe ? 'p' : ''}_${act}${fp8 ? '_e4m3' : ''}`;
}
