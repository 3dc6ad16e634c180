// `zinfer serve` as users run it (the bin through tsx): with no --model it serves the embedded default
// model, prints its URLs, answers on them, and exits 0 on SIGTERM; --config supplies the same config
// object as createEngine plus server options, flags winning; bad configs fail naming the key.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './helpers/server.js';

const CLI = join(ROOT, 'packages/server/src/cli.ts');

interface Served {
  child: ChildProcess;
  urls: Record<string, string>;
  stdout: () => string;
  exit: Promise<number | null>;
}

/** Starts `zinfer serve ARGS` and resolves once it printed "ready". */
function startServe(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', '0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not get ready: ${out} ${err}`)), 30_000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!/ready/.test(out)) return;
      clearTimeout(timer);
      const urls = Object.fromEntries([...out.matchAll(/^\s+(playground|websocket|openai api|health|metrics)\s+(\S+)$/gm)].map((m) => [m[1], m[2]]));
      resolve({ child, urls, stdout: () => out, exit });
    });
    void exit.then((code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

test('zinfer serve with no --model serves the embedded model on 127.0.0.1, prints its URLs, exits 0 on SIGTERM', async () => {
  const s = await startServe([]);
  try {
    assert.match(s.urls.playground, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(s.urls.websocket, /^ws:\/\/127\.0\.0\.1:\d+\/v1\/ws$/);
    assert.match(s.urls['openai api'], /\/v1$/);
    assert.match(s.stdout(), 'packages/server/model');
    assert.equal(await (await fetch(s.urls.health)).json(), { status: 'ok', model: 'zinfer-default' });
    const r = await fetch(`${s.urls['openai api']}/completions`, { method: 'POST', body: JSON.stringify({ model: 'zinfer-default', prompt: 'The jury said that', max_tokens: 8, temperature: 0 }) });
    const body = (await r.json()) as { choices: { text: string }[] };
    assert.match(body.choices[0].text, /\w+/, 'readable English');
    assert.match(await (await fetch(s.urls.playground)).text(), '<title>zinfer playground</title>');
  } finally {
    s.child.kill('SIGTERM');
  }
  assert.is(await s.exit, 0);
});

test('throughput mode: --kv-cache-bytes auto --max-sequences auto sizes the cache from the device and serves', async () => {
  const s = await startServe(['--kv-cache-bytes', 'auto', '--max-sequences', 'auto', '--max-context', '64']);
  try {
    const r = await fetch(`${s.urls['openai api']}/completions`, { method: 'POST', body: JSON.stringify({ model: 'zinfer-default', prompt: 'The jury said that', max_tokens: 4, temperature: 0 }) });
    assert.is(r.status, 200);
    // The cache holds 1,024 sequences of 64 tokens (the throughput-mode cap), not the default 64.
    const metrics = await (await fetch(s.urls.metrics)).text();
    assert.match(metrics, /zinfer_kv_cache_blocks_total(\{[^}]*\})? 4096\b/);
    assert.match(s.stdout(), "ready (4096 KV-cache blocks");
  } finally {
    s.child.kill('SIGTERM');
  }
  assert.is(await s.exit, 0);
  const bad = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'serve', '--max-sequences', 'many'], { cwd: ROOT, encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, '--max-sequences');
  const steps = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'serve', '--decode-steps', '0'], { cwd: ROOT, encoding: 'utf8' });
  assert.is(steps.status, 2);
  assert.match(steps.stderr, '--decode-steps');
});

test('--config supplies engine limits and server options; flags win over it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-serve-'));
  try {
    const config = join(dir, 'serve.json');
    writeFileSync(config, JSON.stringify({ model: join(ROOT, 'packages/server/model'), dtype: 'f32', limits: { maxSequences: 3, maxContext: 128 }, server: { apiKey: 'sk-file', modelName: 'from-file', maxOutputTokens: 50, port: 1 } }));
    const s = await startServe(['--config', config, '--model-name', 'from-flag']);
    try {
      assert.match(s.stdout(), 'context 128');
      const auth = { authorization: 'Bearer sk-file' };
      assert.is((await fetch(`${s.urls['openai api']}/models`)).status, 401);
      const models = (await (await fetch(`${s.urls['openai api']}/models`, { headers: auth })).json()) as { data: { id: string }[] };
      assert.equal(models.data.map((m) => m.id), ['from-flag']);
      const over = await fetch(`${s.urls['openai api']}/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ prompt: 'x', max_tokens: 51 }) });
      assert.is(((await over.json()) as { error: { param: string } }).error.param, 'max_tokens');
    } finally {
      s.child.kill('SIGINT');
    }
    assert.is(await s.exit, 0);

    writeFileSync(config, JSON.stringify({ limits: { maxSequences: 0 } }));
    const bad = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', '0', '--config', config], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.is(bad.status, 1);
    assert.match(bad.stderr, 'limits.maxSequences');
    writeFileSync(config, JSON.stringify({ colour: 'red' }));
    const unknown = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'serve', '--config', config], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.is(unknown.status, 1);
    assert.match(unknown.stderr, 'colour');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve refuses unavailable features and a missing model dir clearly', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', '0', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  const offload = run('--offload', 'disk', '--tp', '2');
  assert.is(offload.status, 1);
  assert.match(offload.stderr, '--offload');
  const missing = run('--model', '/nonexistent/model');
  assert.is(missing.status, 1);
  assert.match(missing.stderr, '--model');
  const port = run('--port', 'eighty');
  assert.is(port.status, 2);
});

test.run();
