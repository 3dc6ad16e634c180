#!/usr/bin/env node
// Streamed vs resident parity ON the GPU machine (scripts/gpu-offload.sh runs it before the bench): every
// fixture model through createEngine with cudaBackend({ activations: 'f32' }), once resident and once with
// weightOffload({ tier: host or disk, no deviceMemory (every layer streams), prefetch: 0, 1 or 3 }) from @zinfer/offload.
// The prompt logits must be bit-identical to the resident run's and the 16 greedy tokens identical (the
// streamed program runs the same kernels on the same bytes, only from other addresses). Writes
// $OUT/offload-check-h100.json: one entry per case, pass/fail and the max abs difference.
// ZINFER_OFFLOAD_BENCH_BACKEND=cpu runs it with the cpu backend (no GPU needed).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-offload-check');
const BACKEND = process.env.ZINFER_OFFLOAD_BENCH_BACKEND || 'cuda';
const FIXTURES = join(ROOT, 'fixtures/models');
mkdirSync(OUT, { recursive: true });

const { createEngine } = await import('@zinfer/core');
const { weightOffload } = await import('@zinfer/offload');
const makeBackend = BACKEND === 'cpu'
  ? (await import('@zinfer/kernels/cpu')).cpuBackend
  : (() => {
      const mod = import('@zinfer/kernels/cuda');
      return async () => (await mod).cudaBackend({ activations: 'f32' });
    })();

const report = { backend: BACKEND, date: new Date().toISOString(), card: null, passed: 0, failed: 0, cases: [] };
const save = () => writeFileSync(join(OUT, 'offload-check-h100.json'), `${JSON.stringify(report, null, 2)}\n`);

async function generate(arch, offload) {
  const expected = JSON.parse(readFileSync(join(FIXTURES, arch, 'expected.json'), 'utf8'));
  const backend = await makeBackend();
  if (BACKEND !== 'cpu') report.card ??= (await backend.probe())?.description ?? null;
  const engine = await createEngine({ model: join(FIXTURES, arch), backend, ...(offload ? { offload } : {}) });
  try {
    const r = await engine.generate({ inputIds: expected.input_ids, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
    return { tokens: r.tokens, logits: r.promptLogits, summary: engine.offload?.summary ?? [], timeline: engine.offload?.timeline().length ?? 0 };
  } finally {
    await engine.close();
  }
}

const CONFIGS = [
  { tier: 'host', prefetch: 0 },
  { tier: 'host', prefetch: 1 },
  { tier: 'host', prefetch: 3 },
  { tier: 'disk', prefetch: 1 },
];

for (const arch of readdirSync(FIXTURES).filter((x) => statSync(join(FIXTURES, x)).isDirectory())) {
  let resident;
  try {
    resident = await generate(arch, null);
  } catch (e) {
    report.cases.push({ arch, config: 'resident', ok: false, error: `${e?.message ?? e}`.slice(0, 1000) });
    report.failed++;
    save();
    continue;
  }
  for (const c of CONFIGS) {
    const dir = c.tier === 'disk' ? mkdtempSync(join(tmpdir(), 'zinfer-offload-check-')) : undefined;
    const name = `${c.tier}, prefetch ${c.prefetch}`;
    try {
      // No deviceMemory: only the non-layer weights stay on the device; every layer streams.
      const r = await generate(arch, weightOffload({ tier: c.tier, prefetch: c.prefetch, ...(dir ? { dir } : {}) }));
      let maxAbs = 0;
      let same = r.logits.length === resident.logits.length;
      r.logits.forEach((row, p) => row.forEach((v, i) => {
        const w = resident.logits[p][i];
        if (!Object.is(v, w)) same = false;
        maxAbs = Math.max(maxAbs, Math.abs(v - w) || 0);
      }));
      const tokens = JSON.stringify(r.tokens) === JSON.stringify(resident.tokens);
      const ok = same && tokens;
      report.cases.push({ arch, config: name, ok, logitsBitIdentical: same, maxAbs, tokensIdentical: tokens, tokens: r.tokens, residentTokens: resident.tokens, summary: r.summary, timelineEvents: r.timeline });
      ok ? report.passed++ : report.failed++;
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${arch} ${name}: logits ${same ? 'bit-identical' : `max abs ${maxAbs}`}, tokens ${tokens ? 'identical' : 'differ'}`);
    } catch (e) {
      report.cases.push({ arch, config: name, ok: false, error: `${e?.message ?? e}`.slice(0, 1000) });
      report.failed++;
      console.log(`FAIL ${arch} ${name}: ${`${e?.message ?? e}`.slice(0, 300)}`);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
      save();
    }
  }
}
console.log(`offload check: ${report.passed} passed, ${report.failed} failed; ${join(OUT, 'offload-check-h100.json')}`);
save();
process.exit(report.failed ? 1 : 0);
