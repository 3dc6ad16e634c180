// The residency map of KV-cache offload, without a backend: least-recently-used eviction, blocks in use
// never evicted, a dirty block saved before its device block is reused, loads only of blocks saved before,
// and the capacity error naming the field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '@zinfer/core';
import { KvResidency, type Placement } from '../src/kv-offload/kv-residency.js';
import { stepBlocks } from '../src/kv-offload/step-blocks.js';

const set = (...b: number[]) => new Set(b);
const moves = (m: Placement['saves']) => m.map((x) => [x.engine, x.device]);

test('free device blocks first, then the least recently used block goes', () => {
  const r = new KvResidency(3);
  const a = r.place(set(10, 11), set(10, 11))!;
  assert.equal([...a.device], [[10, 0], [11, 1]]);
  assert.equal(a.saves, []);
  assert.equal(a.loads, [], 'never-saved blocks hold no tokens: nothing to load');
  r.place(set(12), set(12));
  r.place(set(10), set()); // 10 used again: 11 is now the least recently used
  const b = r.place(set(13), set(13))!;
  assert.equal(moves(b.saves), [[11, 1]], 'the LRU block (11), written, is saved');
  assert.is(b.device.get(13), 1, 'and its device block reused');
  assert.is(r.deviceOf(11), undefined);
  const c = r.place(set(11), set())!;
  assert.equal(moves(c.saves), [[12, 2]]);
  assert.equal(moves(c.loads), [[11, 2]], 'a saved block comes back through a load, after the save that frees its device block');
});

test('blocks in use (the running micro-batch, kept) are never evicted; null when the rest cannot make room', () => {
  const r = new KvResidency(4);
  r.place(set(1, 2), set(1, 2));
  r.place(set(3, 4), set(3, 4));
  // 1 and 2 are the LRU ones, but kept (in use): 3 and 4 must go.
  const p = r.place(set(5, 6), set(5, 6), set(1, 2))!;
  assert.equal(moves(p.saves).map(([e]) => e).sort(), [3, 4]);
  assert.ok(r.deviceOf(1) !== undefined && r.deviceOf(2) !== undefined);
  // Everything else in use: no room, and nothing changed.
  assert.is(r.place(set(7), set(7), set(1, 2, 5, 6)), null);
  for (const b of [1, 2, 5, 6]) assert.ok(r.deviceOf(b) !== undefined, `block ${b} still resident`);
  assert.is(r.deviceOf(7), undefined);
  // The micro-batch's own blocks never go either.
  const q = r.place(set(1, 2, 5, 7), set(7))!;
  assert.equal(moves(q.saves), [[6, r.deviceOf(7)!]]);
});

test('a clean block (loaded, not written since) is evicted without a save; a written one is saved again', () => {
  const r = new KvResidency(1);
  r.place(set(1), set(1));
  assert.equal(moves(r.place(set(2), set(2))!.saves), [[1, 0]]);
  const back = r.place(set(1), set())!; // read only
  assert.equal(moves(back.saves), [[2, 0]]);
  assert.equal(moves(back.loads), [[1, 0]]);
  const away = r.place(set(2), set())!;
  assert.equal(away.saves, [], 'block 1 was only read since its load: its host copy is current');
  assert.equal(moves(away.loads), [[2, 0]]);
  r.place(set(2), set(2)); // written now
  assert.equal(moves(r.place(set(1), set())!.saves), [[2, 0]]);
});

test('a micro-batch with more blocks than the device cache is a ConfigError naming parallel.kvOffload.deviceBlocks', () => {
  const r = new KvResidency(3);
  try {
    r.place(set(1, 2, 3, 4), set(4));
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, ConfigError);
    const err = e as ConfigError;
    assert.is(err.info.field, 'parallel.kvOffload.deviceBlocks');
    assert.is(err.info.found, '3');
    assert.match(err.message, /uses 4 KV-cache blocks, more than the 3/);
  }
  assert.is(r.residentCount, 0, 'nothing placed');
});


test('a fresh block (its id handed to a new sequence) is not loaded over: its host copy was the old owner\'s', () => {
  const r = new KvResidency(2);
  r.place(set(5), set(5));
  r.place(set(6), set(6));
  r.place(set(7), set(7)); // 5 saved: its host copy holds the first owner's KV
  r.place(set(6, 7), set());
  const reused = r.place(set(5), set(5), set(), set(5))!;
  assert.equal(moves(reused.loads), [], 'no load of the dead copy');
  r.place(set(6, 7), set()); // 5, written by its new owner, is saved again on eviction
  assert.equal(moves(r.place(set(5), set())!.loads).map(([e]) => e), [5], 'and loaded back when used again');
});

test('stepBlocks: a block is fresh when every sequence that uses it starts it with this step', () => {
  const seq = (cached: number, query: number, table: number[], queryStart = 0) => ({ queryStart, queryLength: query, contextLength: cached + query, blockTable: Int32Array.from(table) });
  const batch = {
    tokenIds: new Int32Array(3), positions: Int32Array.from([16, 0, 1]), slots: Int32Array.from([2 * 4 + 0, 9 * 4 + 0, 9 * 4 + 1]),
    sequences: [seq(16, 1, [1, 3, 5, 7, 2]), seq(0, 2, [9], 1)], selectedRows: Int32Array.from([0, 2]),
  };
  const blocks = stepBlocks(batch, 4, 16);
  assert.equal([...blocks.blocks].sort((a, b) => a - b), [1, 2, 3, 5, 7, 9]);
  assert.equal([...blocks.fresh].sort((a, b) => a - b), [2, 9], 'the decode row starts block 2; the prompt fills block 9 from its first token');
});

test.run();
