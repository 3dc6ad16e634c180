// The rank devices of scripts/gpu-allreduce-check.mjs: the same small interface on a CUDA GPU (a program
// stream, the peer all-reduce of @zinfer/kernels/cuda and NCCL through @zinfer/parallel's communicator)
// and simulated (shared-memory sums over host arrays, to run the check's control flow without a GPU).
// `paths`: 'peer' (one-shot, the engine's default grid), 'peer2' (two-shot, same registration),
// 'peer8' (one-shot, 8 blocks: the small-message A/B of ZINFER_PEER_ALLREDUCE_BLOCKS), 'll' (Lamport, messages
// up to settings.llBytes), 'nccl'. alloc(n, dtype, values?) → handle (unset elements are NaN); allReduce(path, out, x, n,
// dtype, residual?) inside capture(fn) → graph (with a residual: out = residual + the sum, which the peer
// kernels add themselves and the NCCL path adds with the engine's add kernel, as the engine does); replay(graph, times) waits for the replays; read(handle, n, dtype) →
// Float32Array; release(graph | null, handles).

const bytesOf = (dtype) => (dtype === 'f32' ? 4 : 2);
const NAN_WORD = 0x7fc07fc0; // NaN as one f32 or as two f16 / bf16

export async function cudaRank(rank, grid, settings) {
  const par = await import('@zinfer/parallel');
  const cuda = await import('@zinfer/kernels/cuda');
  const core = await import('@zinfer/core');
  const { communicator: tp } = par.joinNcclGrid(grid, rank);
  const gpu = new cuda.CudaStream(cuda.CudaDevice.open(grid.firstDevice + rank), { cacheDir: '/tmp/zinfer-cuda-cache' });
  gpu.loadKernels();
  const peers = tp.device.peers;
  const setup = peers ? await cuda.setupPeerAllReduce(gpu, peers, settings) : { reduce: null, reason: 'the communicator has no peer group' };
  // A second registration with 8 blocks (its own areas and epochs), for the latency A/B.
  const small = setup.reduce ? (await cuda.setupPeerAllReduce(gpu, peers, { ...settings, blocks: 8, halfBytes: 2 ** 21, maxBytes: 2 ** 21 })).reduce : null;
  const reduce = { peer: setup.reduce, peer8: small };
  return {
    rank,
    peer: !!setup.reduce,
    paths: setup.reduce ? ['peer', 'peer2', ...(small ? ['peer8'] : []), ...(settings.llBytes > 0 ? ['ll'] : []), 'nccl'] : ['nccl'],
    reason: setup.reason,
    alloc(n, dtype, values) {
      const words = Math.ceil((n * bytesOf(dtype)) / 4);
      const p = gpu.alloc(words * 4, 'all-reduce check');
      gpu.fill32(p, NAN_WORD, words);
      if (values) gpu.upload(p, core.fromF32(dtype, values));
      return p;
    },
    allReduce(path, out, x, n, dtype, residual = 0n) {
      if (path === 'peer2') reduce.peer.launch(gpu, out, x, n, dtype, 2, residual);
      else if (path === 'll') reduce.peer.launch(gpu, out, x, n, dtype, 'll', residual);
      else if (path !== 'nccl') reduce[path].launch(gpu, out, x, n, dtype, 1, residual);
      else {
        gpu.external(`NCCL all-reduce of ${n} ${dtype}`, [], (stream) => tp.device.allReduce(x, out, n, dtype, stream));
        if (residual) gpu.launch(`add_${dtype}`, { x: Math.min(8192, Math.ceil(n / 256)) }, 256, [out, out, residual, n]);
      }
    },
    capture(fn) {
      gpu.beginCapture();
      try {
        fn();
      } catch (e) {
        try {
          gpu.endCapture();
        } catch {
          // the capture is over either way; the first error is the news
        }
        throw e;
      }
      return gpu.endCapture();
    },
    replay(graph, times) {
      for (let i = 0; i < times; i++) gpu.launchGraph(graph);
      gpu.synchronize();
    },
    read(p, n, dtype) {
      const raw = dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
      gpu.download(raw, p);
      return core.toF32(dtype, raw);
    },
    release(graph, ptrs) {
      if (graph) gpu.destroyGraph(graph);
      for (const p of ptrs) gpu.free(p);
    },
  };
}

export async function simRank(rank, size, shm) {
  const par = await import('@zinfer/parallel');
  const core = await import('@zinfer/core');
  const comm = par.shmCommunicator(shm, rank);
  const mem = new Map();
  let next = 1n;
  let capturing = null;
  const run = async ({ out, x, n, dtype, residual }) => {
    const v = core.toF32(dtype, mem.get(x)).slice(0, n);
    await comm.allReduce(v); // f32 sums in rank order, as the kernel does
    let sum = core.fromF32(dtype, v);
    if (residual) {
      const r = core.toF32(dtype, mem.get(residual));
      sum = core.fromF32(dtype, core.toF32(dtype, sum).map((s, i) => s + r[i]));
    }
    mem.set(out, sum);
  };
  return {
    rank,
    peer: true,
    paths: ['peer', 'peer2', 'peer8', 'll', 'nccl'],
    reason: `simulated, ${size} ranks`,
    alloc(n, dtype, values) {
      const p = next++;
      mem.set(p, core.fromF32(dtype, values ?? new Float32Array(n).fill(NaN)));
      return p;
    },
    allReduce(path, out, x, n, dtype, residual = 0n) {
      if (!capturing) throw new Error('the simulated device runs all-reduces only inside a captured graph');
      capturing.push({ path, out, x, n, dtype, residual });
    },
    capture(fn) {
      capturing = [];
      fn();
      const g = capturing;
      capturing = null;
      return g;
    },
    async replay(graph, times) {
      for (let i = 0; i < times; i++) for (const op of graph) await run(op);
    },
    read(p, n, dtype) {
      return core.toF32(dtype, mem.get(p)).slice(0, n);
    },
    release(_graph, ptrs) {
      for (const p of ptrs) mem.delete(p);
    },
  };
}
