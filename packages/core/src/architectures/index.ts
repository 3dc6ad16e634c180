import { UnsupportedModelError } from '../errors.js';
import type { ConfigReader } from '../model-config.js';
import { gptNeox } from './gpt-neox.js';
import { gpt2 } from './gpt2.js';
import { llamaFamily } from './llama.js';
import { opt } from './opt.js';
import type { Architecture, ModelDescription } from './types.js';

export type { Architecture, ModelDescription, ModelSpec, WeightRecipe } from './types.js';

/** The architectures zinfer ships, by config.json model_type. */
export const ARCHITECTURES: readonly Architecture[] = [gpt2, opt, gptNeox, llamaFamily];

export function describeModel(cfg: ConfigReader, architectures: readonly Architecture[] = ARCHITECTURES): ModelDescription {
  const modelType = cfg.str('model_type');
  const arch = architectures.find((a) => a.modelTypes.includes(modelType));
  if (!arch) {
    throw new UnsupportedModelError('unknown model architecture', {
      file: cfg.file, field: 'model_type', expected: `one of ${architectures.flatMap((a) => a.modelTypes).join(', ')}`, found: modelType,
    });
  }
  return arch.describe(cfg);
}
