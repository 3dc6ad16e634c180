import type { ConfigReader } from '../model-config.js';
import { UnsupportedModelError } from '../errors.js';
import type { ActivationFn } from '../ops.js';

// transformers' ACT2FN names → the op set's activations.
const HF_ACTIVATIONS: Record<string, ActivationFn> = {
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
};

export function readActivation(cfg: ConfigReader, field: string, fallback: string): ActivationFn {
  const name = cfg.str(field, fallback);
  const fn = HF_ACTIVATIONS[name];
  if (!fn) throw new UnsupportedModelError('activation function is not supported', { file: cfg.file, field, expected: Object.keys(HF_ACTIVATIONS).join(', '), found: name });
  return fn;
}
