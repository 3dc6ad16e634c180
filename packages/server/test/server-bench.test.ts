// `npm run bench:serve` end to end at a toy size (benchmarks are commands, never timed tests: this only
// checks the command runs, checks every token and writes the record with the keys).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from './helpers/server.js';

test('bench-serve: N streams, every token checked, a record with the issue keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-bench-serve-'));
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'packages/server/src/bench-serve.ts'), '--streams', '3', '--tokens', '3', '--backend', 'reference', '--results-dir', dir, '--json', join(dir, 'copy.json')], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, 'aggregate ÷ single');
    const file = readdirSync(dir).find((f) => f.startsWith('serve-'))!;
    const rec = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>;
    for (const k of ['streams', 'lost_tokens', 'aggregate_tokens_per_s', 'single_stream_tokens_per_s', 'ttft_p99_ms', 'peak_rss_mb', 'cpu', 'date', 'commit']) assert.ok(k in rec, k);
    assert.is(rec.streams, 3);
    assert.equal([rec.lost_tokens, rec.duplicated_tokens, rec.reordered_tokens, rec.text_mismatches], [0, 0, 0, 0]);
    assert.is(rec.backend, 'reference');
    assert.ok((rec.peak_rss_mb as number) > 10);
    assert.equal(JSON.parse(readFileSync(join(dir, 'copy.json'), 'utf8')), rec);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
