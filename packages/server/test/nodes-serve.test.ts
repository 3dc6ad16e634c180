// `zinfer serve` over two node processes, as users run it: the same command on both, --node-rank 1 joins
// and serves its ranks, --node-rank 0 runs the engine and the HTTP server; a greedy completion through the
// OpenAI API equals the one of a single-node server, and node 1 exits 0 once node 0 has shut down.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { startServer } from '../src/server.js';
import { ROOT } from './helpers/server.js';

const CLI = join(ROOT, 'packages/server/src/cli.ts');
const MODEL = join(ROOT, 'fixtures/models/llama2');
const REQUEST = { model: 'llama2', prompt: [1, 5, 9, 14], max_tokens: 8, temperature: 0 };

interface Node {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

const started: Node[] = [];

function zinfer(args: string[]): Node {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let [out, err] = ['', ''];
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const node = { child, stdout: () => out, stderr: () => err, exit: new Promise<number | null>((r) => child.on('exit', (code) => r(code))) };
  started.push(node);
  return node;
}

/** Kills a node still running (whatever the test did) and waits for it. */
function reap(n: Node): Promise<number | null> {
  if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
  return n.exit;
}

/** The openai api URL once node 0 prints "ready"; fails when it exits first or takes too long. */
function ready(n: Node, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not get ready within ${ms} ms: ${n.stdout()} ${n.stderr()}`)), ms);
    const check = () => {
      const url = /openai api\s+(\S+)/.exec(n.stdout())?.[1];
      if (!url || !/ready/.test(n.stdout())) return;
      clearTimeout(timer);
      resolve(url);
    };
    n.child.stdout!.on('data', check);
    void n.exit.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code} before it was ready: ${n.stderr()}`));
    });
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function complete(openaiUrl: string): Promise<{ choices: { text: string; finish_reason: string }[]; usage: Record<string, number> }> {
  const r = await fetch(`${openaiUrl}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(REQUEST) });
  assert.is(r.status, 200, await r.clone().text());
  return (await r.json()) as { choices: { text: string; finish_reason: string }[]; usage: Record<string, number> };
}

/** The same request on a single-node server (in this process, the reference backend as serve's default). */
async function singleNode(): Promise<Awaited<ReturnType<typeof complete>>> {
  const engine = await createEngine({ model: MODEL, backend: referenceBackend() });
  const server = await startServer({ engine, host: '127.0.0.1', port: 0, modelName: 'llama2' });
  try {
    return await complete(server.openaiUrl);
  } finally {
    await server.close();
    await engine.close();
  }
}

test('serve --pp 2 --tp 2 --nnodes 2: node 0 answers over HTTP as a single-node server does; node 1 exits 0 after node 0 stops', async () => {
  const port = String(await freePort());
  const common = ['serve', '--model', MODEL, '--pp', '2', '--tp', '2', '--nnodes', '2', '--master-port', port];
  const follower = zinfer([...common, '--node-rank', '1']);
  const leader = zinfer([...common, '--node-rank', '0', '--port', '0', '--host', '127.0.0.1']);
  try {
    const [url, plain] = await Promise.all([ready(leader, 30_000), singleNode()]);
    const answer = await complete(url);
    assert.ok(answer.usage.completion_tokens > 0, JSON.stringify(answer));
    assert.equal(answer.choices, plain.choices);
    assert.equal(answer.usage, plain.usage);
    assert.match(follower.stderr(), /zinfer node 1 of 2: joined the leader at 127\.0\.0\.1:\d+/);
    assert.match(follower.stderr(), /zinfer node 1: launch \d+, ranks 2, 3/);

    leader.child.kill('SIGTERM');
    assert.is(await within(leader.exit, 10_000, 'node 0 shutting down'), 0, leader.stderr());
    assert.is(await within(follower.exit, 10_000, 'node 1 exiting after node 0'), 0, follower.stderr());
    assert.match(follower.stderr(), /launch \d+ ended[^]*exiting/);
    assert.is(follower.stdout(), '');
  } finally {
    await Promise.all([reap(leader), reap(follower)]);
  }
});

test.after(() => Promise.all(started.map(reap)).then(() => {}));
test.run();
