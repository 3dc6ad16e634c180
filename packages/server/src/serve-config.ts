// `zinfer serve --config FILE`: one JSON file with the createEngine config (backend by name, since a
// file cannot hold the object) and the server's options. Flags given on the command line win over the
// file; a relative model path is taken relative to the file. Unknown keys are errors naming the key.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, type EngineLimits, type FloatDType } from '@zinfer/core';
import type { ServerOptions } from './server-options.js';

export interface ServeFileConfig {
  model?: string;
  backend?: string;
  dtype?: FloatDType;
  /** Worker threads of the cpu backend. */
  threads?: number;
  limits?: EngineLimits;
  server?: Omit<ServerOptions, 'engine'>;
}

const KEYS = new Set(['model', 'backend', 'dtype', 'threads', 'limits', 'server']);

export function readServeConfig(file: string): ServeFileConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read the config file: ${e instanceof Error ? e.message : String(e)}`, { file, field: 'config' });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`the config file is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, { file, field: 'config' });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError('the config file must hold one JSON object', { file, field: 'config', expected: 'an object' });
  const c = v as Record<string, unknown>;
  for (const k of Object.keys(c)) {
    if (!KEYS.has(k)) throw new ConfigError(`unknown config key ${k}`, { file, field: k, expected: [...KEYS].join(', ') });
  }
  for (const k of ['limits', 'server'] as const) {
    if (c[k] !== undefined && (typeof c[k] !== 'object' || c[k] === null || Array.isArray(c[k]))) throw new ConfigError(`config key ${k} must be an object`, { file, field: k, expected: 'an object' });
  }
  for (const k of ['model', 'backend', 'dtype'] as const) {
    if (c[k] !== undefined && typeof c[k] !== 'string') throw new ConfigError(`config key ${k} must be a string`, { file, field: k, expected: 'a string', found: typeof c[k] });
  }
  const out = c as ServeFileConfig;
  if (out.model !== undefined) out.model = resolve(dirname(file), out.model);
  return out;
}
