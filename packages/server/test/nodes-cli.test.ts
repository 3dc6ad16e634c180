// `zinfer generate` over two node processes, as users run it: the same command on both, --node-rank 0 prints
// the result, --node-rank 1 serves its ranks and exits 0 when node 0 is done; bad node flags and environment
// are typed errors naming the flag or variable.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './helpers/server.js';

const CLI = join(ROOT, 'packages/server/src/cli.ts');
const MODEL = join(ROOT, 'fixtures/models/llama2');

function zinfer(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let [stdout, stderr] = ['', ''];
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill(), 60_000);
  return new Promise((resolve) => child.on('exit', (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr });
  }));
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('generate --pp 2 --tp 2 --nnodes 2: node 0 prints the single-process tokens, node 1 exits 0 after it', async () => {
  const port = String(await freePort());
  const common = ['generate', '--model', MODEL, '--input-ids', '1,5,9,14', '--max-tokens', '6', '--json'];
  const nodes = ['--pp', '2', '--tp', '2', '--nnodes', '2', '--master-port', port];
  const [plain, follower, leader] = await Promise.all([zinfer(common), zinfer([...common, ...nodes, '--node-rank', '1']), zinfer([...common, ...nodes, '--node-rank', '0'])]);
  assert.is(leader.code, 0, leader.stderr);
  assert.is(follower.code, 0, follower.stderr);
  assert.equal(JSON.parse(leader.stdout).tokens, JSON.parse(plain.stdout).tokens);
  assert.match(follower.stderr, /zinfer node 1 of 2: joined the leader at 127\.0\.0\.1:\d+/);
  assert.is(follower.stdout, '');
});

test('bad node flags and environment fail with exit 1 naming the flag or variable', async () => {
  const base = ['generate', '--model', MODEL, '--input-ids', '1,2', '--max-tokens', '1'];
  const runs = await Promise.all([
    zinfer([...base, '--pp', '2'], { WORLD_SIZE: 'two' }),
    zinfer([...base, '--pp', '2', '--nnodes', '2', '--node-rank', '2']),
    zinfer([...base, '--nnodes', '2']),
  ]);
  for (const [r, what] of [[runs[0], 'WORLD_SIZE'], [runs[1], '--node-rank'], [runs[2], '--nnodes']] as const) {
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, what);
  }
});

test.run();
