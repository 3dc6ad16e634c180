// The `zinfer` bin, spawned as users run it (through tsx from src, so the suite needs no server build;
// core and kernels come from their dist). Golden tokens and logits per fixture architecture, tokenizer
// and no-tokenizer model dirs, and the errors of the CLI contract.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SafetensorsFile } from '@zinfer/core';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
const CLI = join(ROOT, 'packages/server/src/cli.ts');
const MODELS = join(ROOT, 'fixtures/models');
const ARCHS = readdirSync(MODELS).filter((d) => statSync(join(MODELS, d)).isDirectory()).sort();
const LOGIT_TOLERANCE = 1e-3;

interface Expected {
  input_ids: number[];
  greedy_tokens: number[];
  prompt_text: string;
  text_ids: number[];
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function zinfer(...args: string[]): Run {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expected(dir: string): Expected {
  return JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
}

/** stdout must be exactly one JSON object (JSON.parse rejects trailing data) and one line. */
function parseJsonOut(r: Run): Record<string, unknown> {
  assert.is(r.code, 0, r.stderr);
  assert.ok(r.stdout.endsWith('}\n') && r.stdout.indexOf('\n') === r.stdout.length - 1, `stdout is one line: ${r.stdout.slice(0, 200)}`);
  const v: unknown = JSON.parse(r.stdout);
  assert.ok(typeof v === 'object' && v !== null && !Array.isArray(v), 'stdout holds an object');
  return v as Record<string, unknown>;
}

function maxAbsError(got: number[][], want: Float32Array, vocab: number): number {
  let worst = 0;
  got.forEach((row, i) => row.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - want[i * vocab + j])))));
  return worst;
}

for (const arch of ARCHS) {
  const dir = join(MODELS, arch);
  const exp = expected(dir);

  test(`${arch}: --input-ids, greedy, --json --logits match transformers`, () => {
    const out = parseJsonOut(zinfer('generate', '--model', dir, '--input-ids', exp.input_ids.join(','), '--max-tokens', '16', '--temperature', '0', '--json', '--logits'));
    assert.equal(out.tokens, exp.greedy_tokens);
    assert.is(out.prompt_tokens, exp.input_ids.length);
    assert.is(out.finish_reason, 'length');
    const file = SafetensorsFile.open(join(dir, 'expected-logits.safetensors'));
    const want = file.read('logits');
    file.close();
    const [rows, vocab] = want.shape;
    const logits = out.logits as number[][];
    assert.is(logits.length, rows);
    assert.ok(logits.every((r) => r.length === vocab), `every row has ${vocab} logits`);
    const err = maxAbsError(logits, want.data as Float32Array, vocab);
    assert.ok(err <= LOGIT_TOLERANCE, `${arch}: max |logit error| ${err} > ${LOGIT_TOLERANCE}`);
  });

  test(`${arch}: --prompt is tokenized like transformers`, () => {
    const out = parseJsonOut(zinfer('generate', '--model', dir, '--prompt', exp.prompt_text, '--max-tokens', '4', '--json'));
    assert.is(out.prompt_tokens, exp.text_ids.length);
    assert.is((out.tokens as number[]).length, 4);
    assert.type(out.text, 'string');
    assert.not.ok('logits' in out, 'no logits without --logits');
  });
}

test('text mode streams the same text as --json, then a newline', () => {
  const dir = join(MODELS, ARCHS[0]);
  const args = ['generate', '--model', dir, '--prompt', 'Once upon a time', '--max-tokens', '8'];
  const json = parseJsonOut(zinfer(...args, '--json'));
  const text = zinfer(...args);
  assert.is(text.code, 0, text.stderr);
  assert.is(text.stdout, `${json.text as string}\n`);
});

test('a model directory without tokenizer files: ids work, text is null, --prompt fails', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'zinfer-cli-'));
  try {
    const src = join(MODELS, ARCHS[0]);
    const dir = join(tmp, 'model');
    cpSync(src, dir, { recursive: true, filter: (f) => !/tokenizer/.test(f.slice(src.length)) });
    const exp = expected(dir);
    const ids = exp.input_ids.join(',');
    const out = parseJsonOut(zinfer('generate', '--model', dir, '--input-ids', ids, '--max-tokens', '16', '--json'));
    assert.equal(out.tokens, exp.greedy_tokens);
    assert.is(out.text, null);
    const plain = zinfer('generate', '--model', dir, '--input-ids', ids, '--max-tokens', '16');
    assert.is(plain.stdout, `${exp.greedy_tokens.join(' ')}\n`, 'ids space-separated without a tokenizer');
    const bad = zinfer('generate', '--model', dir, '--prompt', 'hello');
    assert.is(bad.code, 1);
    assert.match(bad.stderr, /tokenizer/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('--tp 2, --pp 2, --tp 2 --pp 2 and (on a MoE model) --ep 2 give the single-device tokens', () => {
  const run = (dir: string, ...flags: string[]) => {
    const ids = expected(dir).input_ids.join(',');
    return parseJsonOut(zinfer('generate', '--model', dir, '--input-ids', ids, '--max-tokens', '8', '--json', ...flags)).tokens;
  };
  const dense = join(MODELS, 'qwen3');
  const base = run(dense);
  for (const flags of [['--tp', '2'], ['--pp', '2'], ['--tp', '2', '--pp', '2']]) assert.equal(run(dense, ...flags), base, flags.join(' '));
  const moe = join(ROOT, 'fixtures/moe/mixtral');
  assert.equal(run(moe, '--ep', '2'), run(moe));
});

test('no-op values of parallel flags pass (--tp 1 --pp 1 --ep 1)', () => {
  const dir = join(MODELS, ARCHS[0]);
  const out = parseJsonOut(zinfer('generate', '--model', dir, '--input-ids', '1,2,3', '--max-tokens', '2', '--tp', '1', '--pp', '1', '--ep', '1', '--json'));
  assert.is((out.tokens as number[]).length, 2);
});

// [args after `generate --model <fixture>`, exit code, what stderr must name]
const BAD: [string[], number, RegExp][] = [
  [['--input-ids', '1,2', '--temperature', 'NaN'], 1, /--temperature/],
  [['--input-ids', '1,2', '--temperature', 'abc'], 2, /--temperature/],
  [['--input-ids', '1,2', '--top-p', '0'], 1, /--top-p.*top_p/],
  [['--input-ids', '1,2', '--top-p', '1.5'], 1, /--top-p.*top_p/],
  [['--input-ids', '1,x'], 2, /--input-ids/],
  [['--input-ids', '1,2', '--prompt', 'hi'], 2, /--prompt.*--input-ids|--input-ids.*--prompt/],
  [[], 2, /--prompt.*--input-ids/],
  [['--input-ids', '1,2', '--max-tokens', '1.5'], 2, /--max-tokens/],
  [['--input-ids', '99999'], 1, /--input-ids/],
  [['--input-ids', '1,2', '--logits'], 2, /--logits.*--json/],
  [['--input-ids', '1,2', '--tp', '3'], 1, /parallel\.size|num_attention_heads/],
  [['--input-ids', '1,2', '--pp', '0'], 2, /--pp/],
  [['--input-ids', '1,2', '--offload', 'host', '--tp', '2'], 1, /--offload.*--tp/],
  [['--input-ids', '1,2', '--device-memory', '1GiB'], 1, /--device-memory.*only applies with --offload/],
  [['--input-ids', '1,2', '--backend', 'cuda'], 1, /backend cuda cannot run on this machine/],
  [['--input-ids', '1,2', '--backend', 'tpu'], 2, /--backend/],
];

for (const [args, code, names] of BAD) {
  test(`generate ${args.join(' ') || '(no prompt)'} → exit ${code}, one line naming the flag`, () => {
    const r = zinfer('generate', '--model', join(MODELS, ARCHS[0]), ...args);
    assert.is(r.code, code, r.stderr);
    assert.is(r.stdout, '');
    assert.match(r.stderr, /^zinfer: [^\n]+\n$/);
    assert.match(r.stderr, names);
  });
}

test('a missing --model directory, and no --model at all, name --model', () => {
  const missing = zinfer('generate', '--model', join(MODELS, 'no-such-model'), '--input-ids', '1,2');
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /^zinfer: --model: .*no-such-model/);
  const none = zinfer('generate', '--input-ids', '1,2');
  assert.is(none.code, 2);
  assert.match(none.stderr, /--model/);
});

test('an unknown command is a usage error', () => {
  const r = zinfer('serve-nothing');
  assert.is(r.code, 2);
  assert.match(r.stderr, /^zinfer: unknown command/);
});

test('--help documents the greedy default', () => {
  const r = zinfer('generate', '--help');
  assert.is(r.code, 0);
  assert.match(r.stdout, /--temperature <t>[\s\S]*greedy[\s\S]*default: 0/);
});

test.run();
