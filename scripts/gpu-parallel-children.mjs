// The child processes of scripts/gpu-parallel-bench.mjs: cudaMicrobench on every GPU at once, and the
// independent replicas (scripts/gpu-parallel-replica.mjs), loaded first and then measured in lock-step.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** cudaMicrobench(ordinal) in a child process, so every GPU is measured at once. */
export function microbenchProcess(ordinal) {
  const code = `import('@zinfer/kernels/cuda').then((m) => { const r = m.cudaMicrobench(${ordinal}, { readOnly: true }); console.log(JSON.stringify({ readGBps: r.readGBps, copyGBps: r.copyGBps })); })`;
  return runChild(['--input-type=module', '-e', code], { timeoutS: 150 }).then((lines) => JSON.parse(lines.at(-1)));
}

function runChild(args, { timeoutS }) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: HERE, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutS * 1000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('close', (code) => (code === 0 ? resolve(out.trim().split('\n')) : reject(new Error(`child exited ${code}: ${err.slice(-800)}`))));
  });
}

/** Starts n replica processes, waits until all are loaded, then runs each measurement in lock-step. */
export async function runReplicas(n, job, { timeoutS, log }) {
  const kids = Array.from({ length: n }, (_, device) => replicaProcess({ ...job, device }, timeoutS));
  try {
    const ready = await Promise.all(kids.map((k) => k.next()));
    log(`   replicas loaded in ${ready.map((r) => r.loadS.toFixed(1)).join(', ')} s`);
    const per = kids.map(() => []);
    for (let i = 0; i < job.runs.length; i++) {
      for (const k of kids) k.send('go');
      (await Promise.all(kids.map((k) => k.next()))).forEach((r, j) => per[j].push(r));
    }
    return per;
  } finally {
    for (const k of kids) k.end();
  }
}

function replicaProcess(job, timeoutS) {
  const child = spawn(process.execPath, [join(HERE, 'gpu-parallel-replica.mjs'), JSON.stringify(job)], { cwd: HERE, stdio: ['pipe', 'pipe', 'pipe'] });
  const queue = [];
  const waiting = [];
  let buf = '';
  let err = '';
  const push = (m) => (waiting.length ? waiting.shift()(m) : queue.push(m));
  child.stderr.on('data', (c) => (err += c));
  child.stdout.on('data', (c) => {
    buf += c;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('{')) push(JSON.parse(line));
    }
  });
  child.on('close', (code) => push({ error: `replica ${job.device} exited ${code}: ${err.slice(-600)}` }));
  // A load or a measurement gets timeoutS: a hung replica must not hang the bench.
  const next = async () => {
    let timer;
    const late = new Promise((r) => (timer = setTimeout(() => r({ error: `no answer in ${timeoutS} s` }), timeoutS * 1000)));
    const m = queue.length ? queue.shift() : await Promise.race([new Promise((r) => waiting.push(r)), late]);
    clearTimeout(timer);
    if (m.error) throw new Error(`replica ${job.device}: ${m.error}`);
    return m;
  };
  const end = () => {
    child.stdin.end();
    setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 20000).unref();
  };
  return { next, send: (line) => child.stdin.write(`${line}\n`), end };
}
