// `zinfer generate --offload`: the same tokens and logits as the resident run, the placement summary on
// stderr (stdout stays one JSON object), and budgets too small named by flag.
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
const CLI = join(ROOT, 'packages/server/src/cli.ts');
const MODEL = join(ROOT, 'fixtures/models/gpt2');

function generate(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'generate', '--model', MODEL, '--input-ids', '5,6,7,8', '--max-tokens', '5', '--json', '--logits', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return r;
}

test('generate --offload disk|host --device-memory N --json equals the resident run', () => {
  const plain = generate();
  assert.is(plain.status, 0, plain.stderr);
  const want = JSON.parse(plain.stdout) as { tokens: number[]; logits: number[][] };
  for (const args of [['--offload', 'disk', '--device-memory', '340000', '--prefetch', '0'], ['--offload', 'host', '--prefetch', '3'], ['--offload', 'disk']]) {
    const r = generate(...args);
    assert.is(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as typeof want; // stdout is exactly one JSON object
    assert.equal(got.tokens, want.tokens, args.join(' '));
    assert.equal(got.logits, want.logits, args.join(' '));
    assert.match(r.stderr, /^zinfer: offload device: .*\nzinfer: offload (disk|host): layers 0-1 streamed/m);
  }
});

test('generate --offload host|disk --dp 2|4 (each rank fetches 1/N of every layer) equals the resident run', () => {
  const want = JSON.parse(generate().stdout) as { tokens: number[]; logits: number[][] };
  for (const args of [['--offload', 'host', '--dp', '2'], ['--offload', 'disk', '--dp', '4', '--prefetch', '0']]) {
    const r = generate(...args);
    assert.is(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as typeof want;
    assert.equal(got.tokens, want.tokens, args.join(' '));
    assert.equal(got.logits, want.logits, args.join(' '));
    assert.match(r.stderr, /fetch: rank 0 of \d keeps 1\/\d of each streamed layer/);
  }
  const bad = generate('--offload', 'host', '--dp', '2', '--tp', '2');
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /does not combine with --tp/);
});

test('a --device-memory too small for the streaming slots fails naming --device-memory', () => {
  const r = generate('--offload', 'disk', '--device-memory', '1000');
  assert.is(r.status, 1);
  assert.is(r.stdout, '');
  assert.match(r.stderr, /^zinfer: .*offload\.deviceMemory.*--device-memory/);
});

test.run();
