// GET /: the playground page, a static file kept as plain HTML in src/playground/ and copied beside the
// bundles (dist/playground/) by the build, so the same relative path works from sources and from dist.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { moduleDir } from './module-dir.js';

let page: Buffer | null = null;

export function playgroundPath(): string {
  return join(moduleDir(), 'playground', 'index.html');
}

export function servePlayground(res: ServerResponse): void {
  page ??= readFileSync(playgroundPath());
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': page.length, 'cache-control': 'no-cache' });
  res.end(page);
}
