// The harness every GPU script shares: the log tee, the bundle's commit, importing the built packages,
// the flat result + detail JSON written after every step, and the step runner (budget, skip, error
// recording). Plain JS, no package imports, so a script can load it before it knows the packages built.
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A `log(line)` that prints and appends to `file` (emptied first); makes the folder. */
export function teeLog(file) {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, '');
  return (line = '') => {
    console.log(line);
    appendFileSync(file, `${line}\n`);
  };
}

/** The lines of the bundle's COMMIT file under `root` (first: the commit, then dirty files); [] when absent. */
export function commitLines(root) {
  try {
    return readFileSync(join(root, 'COMMIT'), 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** The bundle's commit, else `git rev-parse HEAD` in `root` (a checkout), else null. */
export function commitOrHead(root) {
  const lines = commitLines(root);
  if (lines.length) return lines[0].trim() || null;
  return spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout?.trim() || null;
}

/** Imports `specifiers` in parallel; on failure prints the SETUP line through `log` and exits 2. */
export async function importPackages(specifiers, log = console.log) {
  try {
    return await Promise.all(specifiers.map((s) => (s ? import(s) : null)));
  } catch (e) {
    log(`SETUP: cannot import the built packages (${e.message}); run scripts/gpu-bundle.sh and unpack the bundle`);
    process.exit(2);
  }
}

/** A `save()` writing each [file, object] pair as indented JSON (with a final newline) under `out`. */
export function jsonWriter(out, files) {
  return () => {
    for (const [file, obj] of files) writeFileSync(join(out, file), `${JSON.stringify(obj, null, 2)}\n`);
  };
}

export const round = (x, d = 3) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

/** a ÷ b rounded, null when either is missing or b is 0. */
export const ratio = (a, b, d = 3) => (a !== null && b !== null && b !== 0 ? round(a / b, d) : null);

/** The devices a backend sees: probe() of `backendFor(ordinal)` for 0..max-1 until one returns null or throws. */
export async function probeDevices(backendFor, max) {
  const found = [];
  for (let i = 0; i < max; i++) {
    const info = await (await backendFor(i)).probe().catch(() => null);
    if (!info) break;
    found.push(info);
  }
  return found;
}

/**
 * The step runner of the benches. `step(name, fn, { minSeconds, shareSeconds })` skips the step when the
 * budget left is below minSeconds (recorded in detail.errors as `skipped: …`), else runs `fn(left)`, puts
 * its object into detail.steps[name] with the seconds it took, records a failure and goes on; saves after
 * every step. `stepHas(s)`: whether the running step's share (and the budget) still holds s seconds.
 * t0: when the budget started (performance.now()). errors: 'stack' keeps the stack (2000 chars) in detail.errors, 'message' the message (3000).
 */
export function stepRunner({ budgetS, log, save, detail, errors = 'stack', noteSkipped = false, t0 = performance.now() }) {
  const elapsed = () => (performance.now() - t0) / 1000;
  let stepEnd = Infinity;
  const stepHas = (seconds) => (Math.min(stepEnd, t0 + budgetS * 1000) - performance.now()) / 1000 > seconds;
  async function step(name, fn, { minSeconds = 0, shareSeconds = null } = {}) {
    stepEnd = shareSeconds === null ? Infinity : performance.now() + shareSeconds * 1000;
    const left = budgetS - elapsed();
    if (left < minSeconds) {
      detail.errors[name] = `skipped: ${left.toFixed(0)} s of the budget left, the step needs ~${minSeconds} s`;
      log(`SKIP [${name}] ${detail.errors[name]}`);
      return save();
    }
    const t = performance.now();
    log(`.. [${name}] at ${elapsed().toFixed(0)} s`);
    try {
      const r = await fn(left);
      const seconds = (performance.now() - t) / 1000;
      detail.steps[name] = { seconds, ...(r && typeof r === 'object' ? r : {}) };
      log(`OK [${name}] ${seconds.toFixed(1)} s${noteSkipped && r?.skipped ? ` (${r.skipped})` : ''}`);
    } catch (e) {
      detail.errors[name] = errors === 'stack' ? `${e?.stack ?? e}`.slice(0, 2000) : `${e?.message ?? e}`.slice(0, 3000);
      log(`FAIL [${name}] ${`${e?.message ?? e}`.replace(/\s+/g, ' ').slice(0, 600)}`);
    } finally {
      save();
    }
  }
  return { step, stepHas, elapsed };
}

/** Exit code of a bench: 1 when a step failed (skips do not count), else 0. */
export const benchExitCode = (detail) => (Object.values(detail.errors).some((e) => !e.startsWith('skipped')) ? 1 : 0);

/**
 * The PASS/FAIL/SKIP cases of a check: `record(group, name, status, detail, ms)` prints one line, adds it
 * to results.cases and saves `file` under `out`; `finish()` prints the table and the counts, saves, and
 * exits 1 when a case failed, else 0.
 */
export function caseRecorder(out, file, results) {
  const save = () => writeFileSync(join(out, file), JSON.stringify(results, null, 2));
  const record = (group, name, status, detail = '', ms = 0) => {
    results.cases.push({ group, name, status, ms, detail });
    console.log(`${status} [${group}] ${name}${ms ? ` (${ms} ms)` : ''}${detail ? `  ${detail}` : ''}`);
    save();
  };
  const finish = () => {
    const count = (s) => results.cases.filter((c) => c.status === s).length;
    console.log('\n== summary');
    console.log('status  group      case');
    for (const c of results.cases) console.log(`${c.status.padEnd(7)} ${c.group.padEnd(10)} ${c.name}`);
    console.log(`${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped; results in ${join(out, file)}`);
    save();
    process.exit(count('FAIL') ? 1 : 0);
  };
  return { save, record, finish };
}

/**
 * Runs `argv` with a time limit (SIGKILL), prints its last `tail` output lines as `   name: …` through
 * `log`, throws when it failed, and returns its last stdout line parsed as JSON. `env` adds variables.
 */
export function childJson(name, argv, limitS, { log, tail = 20, env = {} }) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: Math.max(1, Math.floor(limitS * 1000)), maxBuffer: 64 << 20, killSignal: 'SIGKILL', env: { ...process.env, ...env } });
  for (const line of `${r.stdout || ''}\n${r.stderr || ''}`.split('\n').filter(Boolean).slice(-tail)) log(`   ${name}: ${line.slice(0, 300)}`);
  if (r.error) throw new Error(`${name}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${name} exited ${r.status ?? r.signal}: ${(r.stderr || '').slice(-1500)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/**
 * The `runCase(group, name, fn)` of the single-GPU checks: runs fn, pushes { group, name, status, ms,
 * detail } into results.cases (detail: fn's string, or the error folded to one line of errLength),
 * prints it, then `after()`. `skip()` returning a reason records a SKIP without running fn.
 */
export function caseRunner({ log, results, errLength, after = () => {}, skip = () => null }) {
  const fmtErr = (e) => (e && e.message ? e.message : String(e)).replace(/\s+/g, ' ').slice(0, errLength);
  return async (group, name, fn) => {
    const why = skip();
    if (why) return void results.cases.push({ group, name, status: 'SKIP', ms: 0, detail: why });
    const t0 = performance.now();
    let status = 'PASS';
    let detail = '';
    try {
      detail = (await fn()) ?? '';
    } catch (e) {
      status = 'FAIL';
      detail = fmtErr(e);
    }
    const ms = Math.round(performance.now() - t0);
    results.cases.push({ group, name, status, ms, detail });
    log(`${status} [${group}] ${name} (${ms} ms)${detail ? `  ${detail}` : ''}`);
    after();
  };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

/** Deterministic prompt ids in [100, vocab − 100) (xorshift32). */
export function promptIds(n, vocab, seed) {
  let x = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return 100 + (x % (vocab - 200));
  });
}

/**
 * Chained greedy decode (Program.runArgmaxSteps) on decode steps of `rows` sequences at context ~`context`:
 * the median ms a token over `calls` timed calls of `chain` steps each (2 warm-up calls first), and whether
 * one call of `check` steps gives the ids of `check` runArgmax calls with each step's ids fed by the host.
 */
export async function programChain(program, stepBatch, { rows, context, vocab, chain, calls = 8, check = 20, blockSize = 16 }) {
  const per = Math.ceil((context + Math.max(chain * (calls + 2), check) + 8) / blockSize);
  const parts = (t, ids) => Array.from({ length: rows }, (_, i) => ({ tokens: [ids ? ids[i] : (7 * t + i) % vocab], cached: context + t, blocks: Array.from({ length: per }, (_, b) => i * per + b) }));
  const times = [];
  for (let c = 0; c < calls + 2; c++) {
    const batch = stepBatch(parts(c * chain), blockSize, 'last');
    const t0 = performance.now();
    await program.runArgmaxSteps(batch, chain);
    if (c >= 2) times.push((performance.now() - t0) / chain);
  }
  const chained = await program.runArgmaxSteps(stepBatch(parts(0), blockSize, 'last'), check);
  const stepwise = [];
  let ids = null;
  for (let t = 0; t < check; t++) {
    ids = await program.runArgmax(stepBatch(parts(t, ids), blockSize, 'last'));
    stepwise.push(...ids);
  }
  const same = stepwise.every((id, i) => id === chained[i]);
  return { msPerToken: median(times), same, chained: [...chained.slice(0, 2 * rows)], stepwise: stepwise.slice(0, 2 * rows) };
}

/**
 * Median ms of Program.run (runArgmax with `argmax`, where the program has it: the reference backend's has
 * not) on decode steps of `rows` sequences at context ~`context`, each on its own range of cache blocks; 4
 * warm-up steps first (the graph bucket is captured).
 */
// `sample` (a row's sampling params without the draw): each row picks with a fresh uniform, on the device
// through runSample, or with `hostPick` (core's HostRowSampler.pick) on run()'s logits copied to the host.
export async function programDecode(program, stepBatch, { rows, context, vocab, blockSize = 16, steps = 24, argmax = false, sample = null, hostPick = null }) {
  const per = Math.ceil((context + steps + 8) / blockSize);
  const times = [];
  let seed = 12345;
  const uniform = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let t = 0; t < steps + 4; t++) {
    const parts = Array.from({ length: rows }, (_, i) => ({ tokens: [(7 * t + i) % vocab], cached: context + t, blocks: Array.from({ length: per }, (_, b) => i * per + b) }));
    const batch = stepBatch(parts, blockSize, 'last');
    const picks = sample ? Array.from({ length: rows }, () => ({ ...sample, uniform: uniform(), penalized: new Int32Array(0) })) : null;
    const t0 = performance.now();
    if (argmax && program.runArgmax) await program.runArgmax(batch);
    else if (picks && hostPick) hostPick(await program.run(batch), picks, vocab);
    else if (picks) await program.runSample(batch, picks);
    else await program.run(batch);
    if (t >= 4) times.push(performance.now() - t0);
  }
  return median(times);
}
