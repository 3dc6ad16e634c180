// --kv-offload-blocks N: with --pp, pipelineParallel's kvOffload ({ deviceBlocks: N }); without --pp a
// ConfigError naming the flag; through the CLI, the fixture's greedy tokens, and too few blocks for the
// prompt fail naming parallel.kvOffload.deviceBlocks.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '@zinfer/core';
import { parallelFromFlags } from '../src/parallel-flags.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
const CLI = join(ROOT, 'packages/server/src/cli.ts');
const MODEL = join(ROOT, 'fixtures/models/llama2');

function zinfer(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return r;
}

test('--pp 2 --kv-offload-blocks 8 is pipelineParallel with kvOffload; without --pp it is refused naming the flag', () => {
  assert.is(parallelFromFlags({ tp: 2, pp: 2, ep: 1, kvOffloadBlocks: 8 })!.name, 'pipeline-parallel(2 × tp 2, kv offload 8 blocks)');
  try {
    parallelFromFlags({ tp: 2, pp: 1, ep: 1, kvOffloadBlocks: 8 });
    assert.unreachable('expected a ConfigError');
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.is((e as ConfigError).info.field, 'kv-offload-blocks');
  }
});

test('zinfer generate --pp 2 --kv-offload-blocks: the fixture tokens; too few blocks for the prompt fail naming the field', () => {
  const exp = JSON.parse(readFileSync(join(MODEL, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_tokens: number[] };
  const args = ['generate', '--model', MODEL, '--input-ids', exp.input_ids.join(','), '--max-tokens', String(exp.greedy_tokens.length), '--pp', '2', '--json'];
  const ok = zinfer(...args, '--kv-offload-blocks', '4');
  assert.is(ok.status, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { tokens: number[] }).tokens, exp.greedy_tokens);
  const small = zinfer(...args, '--kv-offload-blocks', '1'); // the prompt alone takes 2 blocks of 16
  assert.is.not(small.status, 0);
  assert.match(small.stderr, /parallel\.kvOffload\.deviceBlocks/);
});

test.run();
