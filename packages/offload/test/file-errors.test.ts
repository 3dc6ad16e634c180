// The offload file under a running engine: truncated, rewritten in place, replaced or deleted after
// place() wrote it, the next read fails the step with an OffloadFileError naming the file and group.
import { renameSync, rmSync, truncateSync, writeFileSync, openSync, writeSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { OffloadFileError, weightOffload, type WeightPlacement } from '../src/index.js';
import { inputIds, MODELS } from './helpers.js';

const DAMAGE: [string, (file: string) => void, RegExp][] = [
  ['truncated', (f) => truncateSync(f, 4096), /changed after it was written.*size 4096/],
  ['rewritten in place', (f) => {
    const fd = openSync(f, 'r+');
    writeSync(fd, new Uint8Array(64).fill(0x7f), 0, 64, 128);
    closeSync(fd);
  }, /changed after it was written/],
  ['replaced', (f) => {
    writeFileSync(`${f}.new`, readFileSync(f));
    renameSync(`${f}.new`, f);
  }, /changed after it was written/],
  ['deleted', (f) => rmSync(f), /is missing/],
];

for (const [what, damage, message] of DAMAGE) {
  test(`an offload file ${what} during a run fails the step with the file and group named`, async () => {
    // prefetch 0 and one read buffer for two layers, so every step reads from the file again.
    const e = await createEngine({ model: join(MODELS, 'llama3'), backend: referenceBackend(), offload: weightOffload({ tier: 'disk', prefetch: 0, buffers: 1 }) });
    try {
      const ids = inputIds('llama3');
      const ok = await e.generate({ inputIds: ids, maxTokens: 2, temperature: 0 }).result;
      assert.is(ok.tokens.length, 2);
      const file = (e.offload as WeightPlacement).file!;
      await new Promise((r) => setTimeout(r, 30)); // past the filesystem's timestamp granularity
      damage(file);
      const err = await e.generate({ inputIds: ids, maxTokens: 2, temperature: 0 }).result.then(() => null, (x: unknown) => x);
      assert.instance(err, OffloadFileError, String(err));
      const fe = err as OffloadFileError;
      assert.is(fe.info.file, file);
      assert.is(fe.group, 0);
      assert.match(fe.message, message);
      assert.match(fe.message, /group 0/);
    } finally {
      await e.close();
    }
  });
}

test.run();
