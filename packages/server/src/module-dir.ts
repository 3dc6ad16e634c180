// This module's folder, for files that ship beside the code (the default model, the playground page).
// The ESM build and tsx have import.meta.url; the CJS build has __dirname (esbuild empties import.meta).
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export function moduleDir(): string {
  const url = (import.meta as { url?: string }).url;
  if (typeof url === 'string' && url.startsWith('file:')) return dirname(fileURLToPath(url));
  if (typeof __dirname === 'string') return __dirname;
  throw new Error('cannot locate the @zinfer/server module folder');
}
