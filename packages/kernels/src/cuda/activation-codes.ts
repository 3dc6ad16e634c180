import type { ActivationFn } from '@zinfer/core';

/** ACT_* codes of cuda/common.cuh. */
export const ACTIVATION_CODES: Record<ActivationFn, number> = { relu: 0, silu: 1, gelu: 2, gelu_tanh: 3 };
