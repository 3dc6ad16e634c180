// --ep with --tp (tp × ep: experts sliced over tp), --ep-dispatch and --ep-coordinated as the strategy.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '@zinfer/core';
import { parallelFromFlags } from '../src/parallel-flags.js';

test('--tp 2 --ep 2 --ep-dispatch all-to-all --ep-coordinated: 4 ranks, experts sliced 2 ways, coordinated', () => {
  const s = parallelFromFlags({ tp: 2, pp: 1, ep: 2, epDispatch: 'all-to-all', epCoordinated: true })!;
  assert.is(s.ranks, 4);
  assert.is(s.name, 'expert-parallel(4, contiguous, slices 2, all-to-all coordinated)');
  assert.is(parallelFromFlags({ tp: 1, pp: 1, ep: 2 })!.name, 'expert-parallel(2, contiguous)');
});

test('--ep-dispatch all-to-all without --ep, and --ep with --pp, are refused naming the flag', () => {
  for (const flags of [{ tp: 1, pp: 1, ep: 1, epDispatch: 'all-to-all' as const }, { tp: 1, pp: 2, ep: 2 }]) {
    try {
      parallelFromFlags(flags);
      assert.unreachable('expected a ConfigError');
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, 'ep');
    }
  }
});

test.run();
