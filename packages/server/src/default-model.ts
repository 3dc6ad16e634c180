// The model that ships inside @zinfer/server (packages/server/model, see its README model card): what
// `zinfer serve` runs when no --model is given. It sits beside dist/ and src/ alike, one folder up.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { moduleDir } from './module-dir.js';

/** Model id the server reports for the embedded model. */
export const DEFAULT_MODEL_NAME = 'zinfer-default';

export function defaultModelDir(): string {
  const dir = resolve(moduleDir(), '..', 'model');
  if (!existsSync(join(dir, 'config.json'))) throw new Error(`the embedded default model is missing from this install (looked in ${dir})`);
  return dir;
}
