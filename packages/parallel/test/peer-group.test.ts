// The PeerGroup that CUDA ranks of one process get on their tensor group: addresses exchanged through
// the host communicator (here the shm communicator, several ranks on one thread), exact for any
// unsigned 64-bit value, in rank order, and refused when the ranks disagree on how many they send.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError } from '@zinfer/core';
import { hostPeerGroup } from '../src/nccl/peer-group.js';
import { createShmGroup, shmCommunicator } from '../src/shm-communicator.js';

const VALUES = [0n, 1n, 0x7f12_3456_789an, 0xffff_ffff_ffff_ffffn, 0x8000_0000_0000_0001n, 0x7fc0_0000n];

test('every rank gets every rank\'s values, bit-exact, in rank order', async () => {
  const group = createShmGroup(3, { timeoutMs: 5000 });
  const peers = [0, 1, 2].map((r) => hostPeerGroup(shmCommunicator(group, r), [4, 5, 6]));
  const sent = peers.map((_p, r) => VALUES.map((v) => v ^ BigInt(r)));
  const got = await Promise.all(peers.map((p, r) => p.exchange(sent[r])));
  for (const g of got) assert.equal(g, sent);
  assert.equal(peers.map((p) => [p.rank, p.devices]), [[0, [4, 5, 6]], [1, [4, 5, 6]], [2, [4, 5, 6]]]);
  const twice = await Promise.all(peers.map((p, r) => p.exchange([BigInt(r + 10)])));
  assert.equal(twice[2], [[10n], [11n], [12n]], 'exchanges repeat in order');
});

test('ranks sending different numbers of values, values outside 64 bits, and a wrong device list are refused', async () => {
  const group = createShmGroup(2, { timeoutMs: 5000 });
  const [a, b] = [0, 1].map((r) => hostPeerGroup(shmCommunicator(group, r), [0, 1]));
  const results = await Promise.allSettled([a.exchange([1n]), b.exchange([1n, 2n])]);
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof BackendError), 'both ranks see the mismatch');
  try {
    await a.exchange([-1n]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, 'unsigned 64-bit');
  }
  try {
    hostPeerGroup(shmCommunicator(createShmGroup(2), 0), [0]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BackendError);
    assert.is((e as BackendError).info.field, 'devices');
  }
});

test.run();
