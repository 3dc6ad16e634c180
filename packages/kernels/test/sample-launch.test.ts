// packSampleRows (cuda/sample-launch.ts) accepts every row a validated request can produce: a row it
// refused would fail the whole step, every sequence of the batch with it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { validateSampling } from '@zinfer/core';
import { packSampleRows, SAMPLE_PARAM_BYTES } from '../src/cuda/sample-launch.js';

test('a top_k beyond 2^53 (an integer, valid for validateSampling) packs as off, as the host keeps every token', () => {
  const params = validateSampling({ temperature: 0.7, topK: 2 ** 60 });
  const packed = packSampleRows([{ ...params, uniform: 0.5, penalized: new Int32Array(0) }], 32);
  assert.is(new DataView(packed.buffer).getInt32(40, true), 0);
  assert.is(packed.byteLength, SAMPLE_PARAM_BYTES);
});

test('a top_k that is not a whole number is still refused, naming the row and field', () => {
  const row = { temperature: 1, topK: 2.5, topP: 1, minP: 0, repetitionPenalty: 1, uniform: 0, penalized: new Int32Array(0) };
  assert.throws(() => packSampleRows([row], 32), (e: Error & { info?: { field?: string } }) => e.info?.field === 'rows[0].topK');
});

test.run();
