#!/usr/bin/env node
// Multi-node ranks on one 4-GPU host (issue 6): two node processes joined by the torchrun-style rendezvous
// of @zinfer/parallel, as two machines would be. This process is RANK 0 (CUDA_VISIBLE_DEVICES=0,1 set by
// gpu-multinode.sh), it starts RANK 1 as a child (the same script with --follower,
// CUDA_VISIBLE_DEVICES=2,3), and runs the fixtures (ZINFER_MULTINODE_MODELS, default llama2,gpt2) with
//   tp 4       one tensor group across both processes (NCCL between them, no peer memory), and
//   tp 2×pp 2  a stage per process (peer all-reduce inside each, NCCL send/recv across),
// each checked against the single-GPU run (greedy ids identical, prompt logits within 1e-3). One follower
// serves every launch (engines are closed and made again). A status line per case; results in
// $OUT/multinode-check.json. Exit codes: 0 all passed, 1 a case failed, 2 setup, 3 fewer than 2 GPUs here.
// ZINFER_MULTINODE_DRY=1: the same flow on the reference backend (host ranks: tensor groups must sit inside
// a node, so tp 4 must be refused naming --tp / --nnodes, and pp 2 runs instead); for this machine.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFixture, sameAsSingle } from './gpu-fixture-parity.mjs';
import { caseRecorder, importPackages } from './gpu-harness.mjs';

process.env.NCCL_NVLS_ENABLE ??= '0'; // never NVLink multicast on these machines (before NCCL loads)
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const dry = process.env.ZINFER_MULTINODE_DRY === '1';

if (process.argv.includes('--follower')) await follower();
else await leader();

async function follower() {
  const [par] = await importPackages(['@zinfer/parallel']);
  const nodes = { ...par.nodeOptions(), joinTimeoutMs: 60_000 };
  const code = await par.runFollower({ nodes, log: (line) => console.log(`   [node ${nodes.rank}] ${line}`) });
  process.exit(code);
}

async function leader() {
  const OUT = process.env.OUT || join(tmpdir(), 'zinfer-multinode-check');
  mkdirSync(OUT, { recursive: true });
  const [core, par, cuda, reference] = await importPackages(['@zinfer/core', '@zinfer/parallel', dry ? null : '@zinfer/kernels/cuda', '@zinfer/kernels/reference']);
  const results = { date: new Date().toISOString(), node: process.version, dry, gpus: { leader: 0 }, nccl: null, cases: [] };
  const { save, record, finish } = caseRecorder(OUT, 'multinode-check.json', results);
  if (!dry) probe(par, results, save);
  const port = Number(process.env.MASTER_PORT) || (await freePort());
  // Both node processes prove the run's shared secret (the follower reads it from its environment).
  process.env.ZINFER_NODE_TOKEN ??= randomBytes(32).toString('hex');
  const nodes = { worldSize: 2, rank: 0, masterAddr: process.env.MASTER_ADDR || '127.0.0.1', masterPort: port, joinTimeoutMs: 60_000, token: process.env.ZINFER_NODE_TOKEN };
  const child = startFollower(port);
  const cacheDir = join(tmpdir(), 'zinfer-cuda-cache');
  const backend = () => (dry ? reference.referenceBackend() : cuda.cudaBackend({ activations: 'f32', cacheDir }));
  const cases = [
    ['tp 4', () => par.tensorParallel({ size: 4, nodes })],
    ['tp 2 × pp 2', () => par.pipelineParallel({ stages: 2, tensorSize: 2, nodes })],
    ...(dry ? [['pp 2', () => par.pipelineParallel({ stages: 2, nodes })]] : []),
  ];
  try {
    for (const name of (process.env.ZINFER_MULTINODE_MODELS || 'llama2,gpt2').split(',')) {
      await fixture(core, name, join(ROOT, 'fixtures/models', name), backend, cases, record);
    }
  } finally {
    // Closing node 0's store closes node 1's connection: it must exit 0 on its own (no launch running).
    await par.NodeLeader.closeAll();
  }
  const timer = setTimeout(child.kill, 15_000);
  const code = await child.exit;
  clearTimeout(timer);
  record('follower', 'node 1 exits 0 when node 0 closes the connection', code === 0 ? 'PASS' : 'FAIL', `exit ${code}`);
  finish();
}

async function fixture(core, name, dir, backend, cases, record) {
  let single;
  try {
    single = await runFixture(core, dir, backend(), null);
  } catch (e) {
    return record('fixtures', `${name}: single GPU`, 'FAIL', e.message.slice(0, 300));
  }
  for (const [label, strategy] of cases) {
    const t0 = performance.now();
    const ms = () => Math.round(performance.now() - t0);
    try {
      const got = await runFixture(core, dir, backend(), strategy());
      record('multinode', `${name}: ${label} over 2 nodes == 1 GPU`, 'PASS', sameAsSingle(got, single), ms());
    } catch (e) {
      // Host ranks cannot slice a tensor group across processes: the dry run checks that it is refused clearly.
      const refused = dry && label === 'tp 4' && e instanceof core.ConfigError && e.info.field === '--tp / --nnodes';
      record('multinode', `${name}: ${label} over 2 nodes${refused ? ' refused on host ranks' : ' == 1 GPU'}`, refused ? 'PASS' : 'FAIL', e.message.slice(0, 400), ms());
    }
  }
}

/** GPUs this process sees (2 expected: CUDA_VISIBLE_DEVICES=0,1) and NCCL; exits 3 with fewer than 2. */
function probe(par, results, save) {
  try {
    results.gpus.leader = par.cudaDeviceCount();
    const nccl = par.Nccl.load();
    results.nccl = { version: nccl.versionString, path: nccl.path };
    console.log(`== node 0 sees ${results.gpus.leader} GPUs (CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES ?? 'all'}); NCCL ${nccl.versionString}`);
  } catch (e) {
    console.log(`NO GPUS: ${e.message}`);
    save();
    process.exit(3);
  }
  if (results.gpus.leader < 2) {
    console.log(`node 0 sees ${results.gpus.leader} GPU(s): each node process needs 2`);
    save();
    process.exit(3);
  }
}

/** RANK 1: this script with --follower, on the GPUs of ZINFER_FOLLOWER_DEVICES (default 2,3); its lines go to stdout. */
function startFollower(port) {
  const env = { ...process.env, WORLD_SIZE: '2', RANK: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
  if (!dry) env.CUDA_VISIBLE_DEVICES = process.env.ZINFER_FOLLOWER_DEVICES || '2,3';
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--follower'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const exit = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { kill: () => child.kill(), exit };
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
