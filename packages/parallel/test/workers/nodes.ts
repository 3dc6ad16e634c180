// Helpers of the multi-node tests: a free loopback port, and a follower node process started from sources.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '../../../..');

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Follower {
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** The shared secret of the multi-node tests that run with one (ZINFER_NODE_TOKEN). */
export const TEST_NODE_TOKEN = '5b2e8c91d04f7a3e6c1d9b08f2a47e55';

/** Starts node `rank` of `worldSize` (test/workers/follower.ts, or `args` as the command) against 127.0.0.1:port, with `token` as ZINFER_NODE_TOKEN when given. */
export function startFollower(port: number, opts: { rank?: number; worldSize?: number; args?: string[]; token?: string } = {}): Follower {
  const args = opts.args ?? [join(import.meta.dirname, 'follower.ts')];
  const env: NodeJS.ProcessEnv = { ...process.env, WORLD_SIZE: String(opts.worldSize ?? 2), RANK: String(opts.rank ?? 1), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
  delete env.ZINFER_NODE_TOKEN;
  if (opts.token !== undefined) env.ZINFER_NODE_TOKEN = opts.token;
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exit };
}
