// The peer-memory all-reduce's host side without a GPU: ranks of one thread compile a tensor-parallel
// graph on recording Gpus whose peer memory is the Gpu's own allocator. Checked: the set-up (peer access to
// every peer, one registered area a rank, the addresses exchanged once per communicator), the launches
// (the peer kernel on the program stream with the exchanged table, in the activation dtype), CUDA graph
// capture and replay, and the fallbacks to NCCL: above the size threshold, when a rank cannot map a peer or
// its Gpu has no peer memory, and when ZINFER_PEER_ALLREDUCE is off.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, GraphBuilder, Rng, type Communicator, type DeviceCollectives, type Graph, type HostTensor, type PeerGroup } from '@zinfer/core';
import { memoryWeights, randomTensor, stepBatch, weightInfos } from '@zinfer/core/testing';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { planExecution } from '../src/cuda/exec-plan.js';
import { LL_SENTINEL, PEER_SIGNAL_BYTES, PEER_THREADS, peerSettings } from '../src/cuda/peer-allreduce.js';
import { RecordingPeerMemory } from '../src/cuda/peer-memory.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';

const SETTINGS: CompileSettings = {
  activations: 'auto', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const [VOCAB, HIDDEN] = [32, 64];
const KV = { numBlocks: 4, blockSize: 4 };
const HALF = 2 ** 21; // the default data half
const LL = 2 ** 16; // the default Lamport slot

/**
 * embedding → attention (decode steps replay as CUDA graphs) → row-parallel out projection → all-reduce
 * (+ the embedding as a residual when `residual`) → LM head.
 */
function rankGraph(residual = false): { graph: Graph; tensors: Map<string, HostTensor> } {
  const rng = Rng.fromSeed(5);
  const t = new Map<string, HostTensor>([
    ['embed', randomTensor(rng, 'f16', [VOCAB, HIDDEN], 0.1)],
    ['q', randomTensor(rng, 'f16', [16, HIDDEN], 0.1)],
    ['k', randomTensor(rng, 'f16', [8, HIDDEN], 0.1)],
    ['v', randomTensor(rng, 'f16', [8, HIDDEN], 0.1)],
    ['o', randomTensor(rng, 'f16', [HIDDEN, 16], 0.1)],
    ['head', randomTensor(rng, 'f16', [VOCAB, HIDDEN], 0.1)],
  ]);
  const b = new GraphBuilder(weightInfos(t), { layers: 1, kvHeads: 1, headDim: 8 });
  const x = b.embedding(b.inputs.tokenIds, 'embed');
  const a = b.attention(b.linear(x, 'q'), b.linear(x, 'k'), b.linear(x, 'v'), { layer: 0, heads: 2, kvHeads: 1, headDim: 8, scale: 0.35, slidingWindow: null });
  const reduced = b.allReduce(b.linear(a, 'o'));
  const y = residual ? b.add(reduced, x) : reduced;
  return { graph: b.build(b.linear(b.gatherRows(y), 'head')), tensors: t };
}

/** A PeerGroup per rank whose exchange completes when every rank of the round has called it. */
function localPeers(devices: number[]): { groups: PeerGroup[]; rounds: bigint[][][] } {
  const rounds: bigint[][][] = [];
  let pending: { values: bigint[][]; waiters: ((all: bigint[][]) => void)[]; arrived: number } | null = null;
  const groups = devices.map((_d, rank): PeerGroup => ({
    rank,
    devices,
    exchange: (values) => new Promise((resolve) => {
      pending ??= { values: [], waiters: [], arrived: 0 };
      const round = pending;
      round.values[rank] = [...values];
      round.waiters.push(resolve);
      if (++round.arrived === devices.length) {
        pending = null;
        rounds.push(round.values);
        for (const w of round.waiters) w(round.values);
      }
    }),
  }));
  return { groups, rounds };
}

function collectives(calls: string[], peers?: PeerGroup): DeviceCollectives {
  const nccl = (op: string) => () => void calls.push(op);
  return { library: 'fake', allReduce: nccl('allReduce'), allGather: nccl('allGather'), send: nccl('send'), recv: nccl('recv'), ...(peers ? { peers } : {}) };
}

function communicator(rank: number, size: number, device: DeviceCollectives): Communicator {
  const host = () => Promise.reject(new Error('host collectives are not used by the cuda backend'));
  return { rank, size, allReduce: host, allGather: host, allToAll: host, send: host, recv: host, close: async () => {}, device };
}

interface Rank {
  gpu: RecordingGpu;
  memory: RecordingPeerMemory | null;
  calls: string[];
  comm: Communicator;
}

/** Ranks on devices `devices`; `opts.unreachable[r]`: devices rank r cannot map; `opts.noPeerMemory`: ranks without. */
function ranks(devices: number[], opts: { unreachable?: number[][]; noPeerMemory?: number[] } = {}): { ranks: Rank[]; rounds: bigint[][][] } {
  const { groups, rounds } = localPeers(devices);
  return {
    rounds,
    ranks: devices.map((d, r) => {
      const gpu = new RecordingGpu();
      const memory = opts.noPeerMemory?.includes(r) ? null : new RecordingPeerMemory(gpu, d, opts.unreachable?.[r] ?? []);
      if (memory) Object.assign(gpu, { peerMemory: () => memory });
      const calls: string[] = [];
      return { gpu, memory, calls, comm: communicator(r, devices.length, collectives(calls, groups[r])) };
    }),
  };
}

const compileAll = (rs: Rank[], residual = false) => {
  const { graph, tensors } = rankGraph(residual);
  return Promise.all(rs.map((r) => compileProgram(r.gpu, graph, memoryWeights(tensors), { kvCache: KV, communicator: r.comm }, SETTINGS)));
};
const prompt = () => stepBatch([{ tokens: [1, 7, 30], cached: 0, blocks: [0, 1] }], KV.blockSize, 'all');
const decode = (t: number) => stepBatch([{ tokens: [t], cached: 3 + t, blocks: [0, 1] }], KV.blockSize, 'last');
const peerLaunches = (gpu: RecordingGpu, from = 0) => gpu.launches.slice(from).filter((l) => l.kernel.startsWith('peer_all_reduce_'));

async function withEnv<T>(env: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await body();
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

test('set-up: every rank maps every peer, registers one area and the areas are exchanged once per communicator', async () => {
  const { ranks: rs, rounds } = ranks([2, 3, 5]);
  const programs = await compileAll(rs);
  assert.is(rounds.length, 1, 'one exchange');
  const areas = rounds[0].map((v) => v[0]);
  rs.forEach((r, i) => {
    assert.equal(r.memory!.enabled, [2, 3, 5].filter((d) => d !== [2, 3, 5][i]), `rank ${i} maps its peers`);
    assert.is(r.memory!.allocations[0], areas[i], 'the area exchanged is the one registered');
    assert.is(r.gpu.live.get(areas[i]), PEER_SIGNAL_BYTES + 2 * HALF + 3 * 3 * LL, 'signals, two data halves, 3 Lamport generations of 3 slots');
  });
  assert.equal(rounds[0].map((v) => v[1]), [32n, 32n, 32n], 'every rank offers its launch grid');
  const again = await compileAll(rs); // a second program on the same communicators: no new set-up
  assert.is(rounds.length, 1);
  assert.is(rs[0].memory!.allocations.length, 2, 'area and table, once');
  for (const p of [...programs, ...again]) await p.dispose();
});

test('small all-reduces launch the peer kernel on the stream (no NCCL), in the activation dtype, with the table', async () => {
  const { ranks: rs } = ranks([0, 1]);
  const programs = await compileAll(rs);
  await Promise.all(programs.map((p) => p.run(prompt())));
  rs.forEach((r, i) => {
    assert.equal(r.calls, [], 'NCCL not called');
    const [l] = peerLaunches(r.gpu);
    assert.is(l.kernel, 'peer_all_reduce_ll_f16', 'up to 64 KiB: the Lamport kernel');
    assert.equal([l.grid.x, l.block], [32, PEER_THREADS]);
    assert.equal(l.args.slice(2), [r.memory!.allocations[1], 3 * HIDDEN, i, 2, HALF, LL, 0n], 'table, count, rank, ranks, half bytes, slot bytes, no residual');
    assert.ok(l.args[0] !== l.args[1], 'out of place');
  });
  for (const p of programs) await p.dispose();
});

test('the Lamport region starts as the sentinel; ZINFER_PEER_ALLREDUCE_LL_BYTES sets its slots and the messages it takes (0: none)', async () => {
  const fills: [bigint, number, number][] = [];
  const { ranks: rs } = ranks([0, 1]);
  for (const r of rs) {
    const fill = r.gpu.fill32.bind(r.gpu);
    r.gpu.fill32 = (dst, value, count) => (fills.push([dst, value, count]), fill(dst, value, count));
  }
  const programs = await compileAll(rs);
  rs.forEach((r) => {
    const area = r.memory!.allocations[0];
    const ll = fills.find(([dst]) => dst === area + BigInt(PEER_SIGNAL_BYTES + 2 * HALF));
    assert.equal(ll?.slice(1), [LL_SENTINEL, (3 * 2 * LL) / 4], '3 generations × 2 slots of sentinel words');
  });
  for (const p of programs) await p.dispose();
  for (const [bytes, kernels] of [['256', ['peer_all_reduce_f16', 'peer_all_reduce_ll_f16']], ['0', ['peer_all_reduce_f16', 'peer_all_reduce_f16']]] as const) {
    await withEnv({ ZINFER_PEER_ALLREDUCE_LL_BYTES: bytes }, async () => {
      const { ranks: more } = ranks([0, 1]);
      const ps = await compileAll(more);
      await Promise.all(ps.map((p) => p.run(prompt()))); // 3 rows: 384 bytes
      await Promise.all(ps.map((p) => p.run(decode(0)))); // 1 row: 128 bytes
      assert.equal(peerLaunches(more[0].gpu).map((l) => l.kernel), kernels, `LL bytes ${bytes}`);
      assert.is(more[0].gpu.live.get(more[0].memory!.allocations[0]), PEER_SIGNAL_BYTES + 2 * HALF + 3 * 2 * Number(bytes));
      for (const p of ps) await p.dispose();
    });
  }
});

test('the residual add after an all-reduce: the peer kernel adds it (no add kernel); through NCCL the all-reduce, then the add', async () => {
  await withEnv({ ZINFER_PEER_ALLREDUCE_MAX_BYTES: String(2 * HIDDEN * 2) }, async () => {
    const { ranks: rs } = ranks([0, 1]);
    const programs = await compileAll(rs, true);
    const kernels = (gpu: RecordingGpu, from: number) => gpu.launches.slice(from).map((l) => l.kernel);
    await Promise.all(programs.map((p) => p.run(prompt()))); // 3 rows: over the peer limit
    for (const r of rs) {
      assert.equal(r.calls, ['allReduce'], 'NCCL');
      const adds = r.gpu.launches.filter((l) => l.kernel === 'add_f16');
      assert.is(adds.length, 1, 'then the add kernel');
      const embedded = r.gpu.launches.find((l) => l.kernel.startsWith('embedding_'))!.args[0];
      assert.ok(adds[0].args.slice(1, 3).includes(embedded), 'of the residual');
    }
    const from = rs.map((r) => r.gpu.launches.length);
    await Promise.all(programs.map((p) => p.run(decode(0)))); // 1 row: through peer memory
    rs.forEach((r, i) => {
      assert.equal(r.calls, ['allReduce'], 'no NCCL this step');
      assert.not.ok(kernels(r.gpu, from[i]).includes('add_f16'), 'no add kernel');
      const [l] = peerLaunches(r.gpu, from[i]);
      const embedded = r.gpu.launches.slice(from[i]).find((k) => k.kernel.startsWith('embedding_'))!.args[0];
      assert.equal(l.args.slice(2), [r.memory!.allocations[1], HIDDEN, i, 2, HALF, LL, embedded], 'the residual is the embedding');
      const head = r.gpu.launches.slice(from[i]).find((k) => k.kernel.startsWith('gemv'));
      assert.ok(head, 'the LM head follows');
    });
    for (const p of programs) await p.dispose();
  });
});

test('a row-parallel GEMV pushes its output into the Lamport slots, and the all-reduce after it only gathers (x null); ZINFER_PEER_PUSH=off, or a message past the Lamport size, keeps them apart', async () => {
  const pushes = (gpu: RecordingGpu, from: number) => gpu.launches.slice(from).filter((l) => /^gemv/.test(l.kernel) && l.args[19] === 4);
  for (const residual of [false, true]) {
    const { ranks: rs } = ranks([0, 1]);
    const programs = await compileAll(rs, residual);
    for (const step of [prompt(), decode(0), decode(1)]) {
      const from = rs.map((r) => r.gpu.launches.length);
      await Promise.all(programs.map((p) => p.run(step)));
      rs.forEach((r, i) => {
        const [push, ...more] = pushes(r.gpu, from[i]);
        assert.ok(push && more.length === 0, 'the out projection pushes; the LM head does not');
        assert.equal(push.args.slice(-5), [r.memory!.allocations[1], i, 2, HALF, LL], 'the table, this rank, the ranks, half and slot bytes');
        const [l] = peerLaunches(r.gpu, from[i]);
        assert.is(l.kernel, 'peer_all_reduce_ll_f16');
        assert.is(l.args[1], 0n, 'the all-reduce reads no x');
        assert.ok(r.gpu.launches.indexOf(push) < r.gpu.launches.indexOf(l), 'after the push');
        const head = r.gpu.launches.slice(from[i]).filter((k) => /^gemv/.test(k.kernel)).at(-1)!;
        assert.equal(head.args.slice(-5), [0n, 0, 0, 0, 0], 'no push arguments elsewhere');
      });
    }
    for (const p of programs) await p.dispose();
  }
  for (const env of [{ ZINFER_PEER_PUSH: 'off' }, { ZINFER_PEER_ALLREDUCE_LL_BYTES: '0' }] as Record<string, string>[]) {
    await withEnv(env, async () => {
      const { ranks: rs } = ranks([0, 1]);
      const programs = await compileAll(rs, true);
      await Promise.all(programs.map((p) => p.run(decode(0))));
      assert.equal(pushes(rs[0].gpu, 0), [], JSON.stringify(env));
      assert.ok(peerLaunches(rs[0].gpu).every((l) => l.args[1] !== 0n), 'the all-reduce reads x');
      for (const p of programs) await p.dispose();
    });
  }
});

test('push plan: a lone linear only an all-reduce reads; not when another collective runs between it and the all-reduce\'s launch, nor when its output has other readers', () => {
  const { tensors } = rankGraph();
  const plan = (shape: 'plain' | 'between' | 'read') => {
    const b = new GraphBuilder(weightInfos(tensors), { layers: 1, kvHeads: 1, headDim: 8 });
    const x = b.embedding(b.inputs.tokenIds, 'embed');
    const a = b.attention(b.linear(x, 'q'), b.linear(x, 'k'), b.linear(x, 'v'), { layer: 0, heads: 2, kvHeads: 1, headDim: 8, scale: 0.35, slidingWindow: null });
    const part = b.linear(a, 'o');
    const reduced = b.allReduce(part);
    const other = shape === 'between' ? b.allReduce(x) : shape === 'read' ? b.add(part, x) : x;
    const y = b.add(b.add(reduced, x), other); // the first add runs the all-reduce
    const graph = b.build(b.linear(b.gatherRows(y), 'head'));
    const p = planExecution(graph, { linear: true, rope: true });
    return [...p.pushes].map(([r, g]) => [r.op, g.members.map((m) => m.attrs.weight)]);
  };
  assert.equal(plan('plain'), [['allReduce', ['o']]]);
  assert.equal(plan('between'), [], 'another all-reduce launches before this one');
  assert.equal(plan('read'), [], 'the partial sums are read elsewhere');
  assert.equal(planExecution(rankGraph().graph, { linear: true, rope: true, push: false }).pushes.size, 0, 'push: false');
});

test('decode steps: the peer launches are captured in the CUDA graph and replayed', async () => {
  const { ranks: rs } = ranks([0, 1]);
  const programs = await compileAll(rs);
  await Promise.all(programs.map((p) => p.run(prompt())));
  for (let t = 0; t < 4; t++) {
    const from = rs.map((r) => r.gpu.launches.length);
    await Promise.all(programs.map((p) => p.run(decode(t))));
    rs.forEach((r, i) => {
      const ls = peerLaunches(r.gpu, from[i]);
      assert.is(ls.length, 1, `step ${t}`);
      assert.is(!!ls[0].replay, t >= 1, `step ${t}: ${t >= 1 ? 'replayed' : 'eager'}`);
      assert.is(ls[0].args[3], HIDDEN);
    });
  }
  assert.is(programs[0].stats.graphCaptures, 1);
  assert.equal(rs[1].calls, []);
  for (const p of programs) await p.dispose();
});

test('ZINFER_PEER_ALLREDUCE_TWO_SHOT_BYTES: messages from that size take the two-shot kernel, smaller ones one-shot', async () => {
  await withEnv({ ZINFER_PEER_ALLREDUCE_TWO_SHOT_BYTES: String(2 * HIDDEN * 2), ZINFER_PEER_ALLREDUCE_LL_BYTES: '0' }, async () => {
    const { ranks: rs } = ranks([0, 1]);
    const programs = await compileAll(rs);
    await Promise.all(programs.map((p) => p.run(prompt()))); // 3 rows: two-shot
    await Promise.all(programs.map((p) => p.run(decode(0)))); // 1 row: one-shot
    assert.equal(peerLaunches(rs[1].gpu).map((l) => l.kernel), ['peer_all_reduce_2s_f16', 'peer_all_reduce_f16']);
    assert.equal(peerLaunches(rs[1].gpu)[0].args.slice(2), peerLaunches(rs[1].gpu)[1].args.slice(2).map((a, i) => (i === 1 ? 3 * HIDDEN : a)), 'same table and rank');
    for (const p of programs) await p.dispose();
  });
  assert.is(peerSettings({}).twoShotBytes, Infinity, 'off unless asked');
});

test('messages above ZINFER_PEER_ALLREDUCE_MAX_BYTES go to NCCL, smaller ones through peer memory', async () => {
  await withEnv({ ZINFER_PEER_ALLREDUCE_MAX_BYTES: String(2 * HIDDEN * 2) }, async () => {
    const { ranks: rs } = ranks([0, 1]);
    const programs = await compileAll(rs);
    await Promise.all(programs.map((p) => p.run(prompt()))); // 3 rows: over
    assert.equal(rs[0].calls, ['allReduce']);
    assert.is(peerLaunches(rs[0].gpu).length, 0);
    await Promise.all(programs.map((p) => p.run(decode(0)))); // 1 row: under
    assert.equal(rs[0].calls, ['allReduce']);
    assert.is(peerLaunches(rs[0].gpu).length, 1);
    for (const p of programs) await p.dispose();
  });
});

test('a rank that cannot map a peer, or has no peer memory: every rank stays on NCCL and frees its area', async () => {
  for (const opts of [{ unreachable: [[], [0]] }, { noPeerMemory: [1] }]) {
    const { ranks: rs, rounds } = ranks([0, 1], opts);
    const programs = await compileAll(rs);
    assert.is(rounds.length, 1, 'the rank that cannot still takes part in the exchange');
    assert.is(rounds[0][1][0], 0n, 'it offers no area');
    assert.equal(rs[0].memory!.allocations, [], 'rank 0 freed its area');
    await Promise.all(programs.map((p) => p.run(prompt())));
    for (const r of rs) {
      assert.equal(r.calls, ['allReduce'], JSON.stringify(opts));
      assert.is(peerLaunches(r.gpu).length, 0);
    }
    for (const p of programs) await p.dispose();
    assert.is(rs[0].gpu.live.size, 0);
  }
});

test('ZINFER_PEER_ALLREDUCE=0: no set-up at all, NCCL; invalid settings name their variable', async () => {
  await withEnv({ ZINFER_PEER_ALLREDUCE: '0' }, async () => {
    const { ranks: rs, rounds } = ranks([0, 1]);
    const programs = await compileAll(rs);
    assert.is(rounds.length, 0);
    await Promise.all(programs.map((p) => p.run(prompt())));
    assert.equal(rs[0].calls, ['allReduce']);
    for (const p of programs) await p.dispose();
  });
  for (const [name, value] of [['ZINFER_PEER_ALLREDUCE_BLOCKS', '65'], ['ZINFER_PEER_ALLREDUCE_BUFFER_BYTES', '100'], ['ZINFER_PEER_ALLREDUCE_MAX_BYTES', 'x'], ['ZINFER_PEER_ALLREDUCE_LL_BYTES', '24']]) {
    try {
      peerSettings({ [name]: value });
      assert.unreachable(name);
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, name);
    }
  }
  assert.equal(peerSettings({ ZINFER_PEER_ALLREDUCE_MAX_BYTES: String(2 ** 24) }).maxBytes, HALF, 'never more than a half holds');
});

test.run();
