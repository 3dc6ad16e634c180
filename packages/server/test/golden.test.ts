// Golden tokens (llama2.c style): a fixed prompt through the whole pipeline (tokenizer with BOS,
// engine, reference backend, CLI) gives exactly these ids. A change here means behaviour changed:
// re-check parity before updating the ids.
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');

function generate(args: string[]): { tokens: number[]; prompt_tokens: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'packages/server/src/cli.ts'), 'generate', ...args, '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('golden: greedy llama3 tiny checkpoint, "Once upon a time", 16 tokens', () => {
  const out = generate(['--model', 'fixtures/models/llama3', '--prompt', 'Once upon a time', '--max-tokens', '16', '--temperature', '0']);
  assert.is(out.prompt_tokens, 10);
  assert.equal(out.tokens, [102, 102, 280, 102, 81, 292, 102, 81, 85, 85, 85, 85, 85, 85, 42, 42]);
});

test('golden: seeded sampling on qwen3 gives the same ids every run', () => {
  const args = ['--model', 'fixtures/models/qwen3', '--prompt', 'The robot climbed the lighthouse', '--max-tokens', '12', '--temperature', '0.8', '--seed', '42'];
  const out = generate(args);
  assert.equal(out.tokens, [120, 2, 258, 251, 300, 260, 284, 66, 176, 207, 89, 143]);
  assert.equal(generate(args).tokens, out.tokens);
});

test.run();
