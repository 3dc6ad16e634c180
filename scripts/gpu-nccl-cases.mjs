// The NCCL part the multi-GPU checks share (gpu-moe-check.mjs, gpu-parallel-check.mjs): the GPU/NCCL
// probe of the leader, one worker thread a GPU running the check's rank cases under a time limit, the
// per-case verdict over every rank, and the case helpers a rank uses.
import { Worker } from 'node:worker_threads';

/** In a rank's worker: `check(name, fn)` runs one case into `results` (never throws), `expect` asserts. */
export function rankCases() {
  const results = [];
  const check = async (name, fn) => {
    try {
      results.push({ name, ok: true, detail: (await fn()) ?? '' });
    } catch (e) {
      results.push({ name, ok: false, detail: String(e?.message ?? e).slice(0, 500) });
    }
  };
  return { results, check, expect };
}

export function expect(cond, what) {
  if (!cond) throw new Error(what);
}

/** The host allToAll with uneven counts `count(src, dst)` (f32, k/8 fractions): every block lands in place. */
export async function hostAllToAll(comm, rank, size, count) {
  const sendCounts = Array.from({ length: size }, (_, d) => count(rank, d));
  const recvCounts = Array.from({ length: size }, (_, s) => count(s, rank));
  const send = Float32Array.from(sendCounts.flatMap((c, d) => Array.from({ length: c }, (_, k) => rank * 100 + d + k / 8)));
  const recv = new Float32Array(recvCounts.reduce((a, b) => a + b, 0));
  await comm.allToAll(send, recv, sendCounts, recvCounts);
  const want = recvCounts.flatMap((c, s) => Array.from({ length: c }, (_, k) => s * 100 + rank + k / 8));
  expect(want.every((v, j) => v === recv[j]), `got ${Array.from(recv).join(',')}, want ${want.join(',')}`);
}

export function bf16Bits(v) {
  return new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16; // small integers are exact in bf16
}

export function bf16ToF32(h) {
  return new Float32Array(Uint32Array.of(h << 16).buffer)[0];
}

/**
 * The leader's probe: GPU count and NCCL version into `results` (gpus, nccl) and a header line. Exits 3
 * (after save) when there is no GPU or fewer than 2; `what` names the check in that line.
 */
export function probeGpus(par, results, save, what) {
  let gpus;
  try {
    gpus = par.cudaDeviceCount();
    const nccl = par.Nccl.load();
    results.nccl = { version: nccl.versionString, path: nccl.path };
    console.log(`== ${gpus} GPUs; NCCL ${nccl.versionString} (${nccl.path}); NCCL_NVLS_ENABLE=${process.env.NCCL_NVLS_ENABLE}`);
  } catch (e) {
    console.log(`NO GPUS: ${e.message}`);
    save();
    process.exit(3);
  }
  results.gpus = gpus;
  if (gpus < 2) {
    console.log(`only ${gpus} GPU visible: the ${what} check needs 2 or more`);
    save();
    process.exit(3);
  }
  return gpus;
}

/**
 * Runs `script` (a URL) in one worker thread a GPU with workerData `{ rank, size, ...data }`, then
 * records one case a rank case (PASS when every rank passed; the failing ranks' details) and the
 * init/teardown line. On a hang past `timeoutS` or a worker error: aborts `grids`, records `label` FAIL.
 */
export async function runRanks(par, { script, gpus, data, grids, timeoutS, label, record }) {
  const t0 = performance.now();
  const workers = Array.from({ length: gpus }, (_, rank) => new Worker(script, { workerData: { rank, size: gpus, ...data } }));
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`ranks did not finish within ${timeoutS} s`)), timeoutS * 1000)));
  try {
    const answers = await Promise.race([Promise.all(workers.map((w) => new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    }))), timeout]);
    const ms = Math.round(performance.now() - t0);
    for (const [i, { name }] of answers[0].results.entries()) {
      const failed = answers.filter((a) => !a.results[i].ok);
      const detail = failed.length ? failed.map((a) => `rank ${a.rank}: ${a.results[i].detail}`).join('; ') : answers.map((a) => a.results[i].detail).filter(Boolean)[0] ?? '';
      record('nccl', `${name}, ${gpus} GPUs`, failed.length ? 'FAIL' : 'PASS', detail);
    }
    record('nccl', 'init, checks and teardown', 'PASS', '', ms);
  } catch (e) {
    for (const g of grids) par.abortNcclGrid(g);
    record('nccl', `${label} over ${gpus} GPUs`, 'FAIL', e.message);
  } finally {
    clearTimeout(timer);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
