import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RequestError } from '../src/errors.js';
import { DEFAULT_SAMPLING, Rng, Sampler, TokenFilter, validateSampling, type SamplingParams } from '../src/sampling/index.js';

const params = (p: Partial<SamplingParams>): SamplingParams => validateSampling({ seed: 1, ...p });
const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);
const softmax = (xs: number[]): number[] => {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};
/** Ids with nonzero probability. */
const support = (probs: Float64Array): number[] => [...probs.keys()].filter((i) => probs[i] > 0);

/** Naive spec of the whole pipeline (full sort, fresh arrays), to check the fast path against. */
function reference(logits: Float32Array, history: number[], p: SamplingParams): Float64Array {
  const s = Array.from(logits, (v) => (Number.isNaN(v) ? -Infinity : v));
  for (const id of new Set(history)) {
    const v = logits[id];
    if (!Number.isNaN(v)) s[id] = Math.fround(v > 0 ? v / p.repetitionPenalty : v * p.repetitionPenalty);
  }
  const out = new Float64Array(logits.length);
  let keep = [...s.keys()].filter((i) => s[i] > -Infinity).sort((a, b) => s[b] - s[a] || a - b);
  if (p.temperature === 0) {
    out[keep[0] ?? 0] = 1;
    return out;
  }
  const w = (i: number): number => Math.exp((s[i] - s[keep[0]]) / p.temperature);
  if (p.topK > 0 && p.topK < keep.length) keep = keep.filter((i) => s[i] >= s[keep[p.topK - 1]]);
  if (p.topP < 1) {
    const total = keep.reduce((a, i) => a + w(i), 0);
    let above = 0;
    keep = keep.filter((i) => {
      const stays = above / total < p.topP;
      above += w(i);
      return stays;
    });
  }
  keep = keep.filter((i) => w(i) > 0 && w(i) >= p.minP);
  const total = keep.reduce((a, i) => a + w(i), 0);
  for (const i of keep) out[i] = w(i) / total;
  return out;
}

/** Deterministic standard-normal-ish logits (sum of uniforms), from a seeded Rng. */
function randomLogits(n: number, seed: number, masked = 0): Float32Array {
  const r = Rng.fromSeed(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r.next() + r.next() + r.next() - 1.5) * 4;
  for (let i = 0; i < masked; i++) out[Math.floor(r.next() * n)] = -Infinity;
  return out;
}

// ---- validation ----

test('validateSampling fills transformers-neutral defaults', () => {
  assert.equal(validateSampling({}), { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 });
  assert.equal(validateSampling({}), { ...DEFAULT_SAMPLING });
  assert.not.ok('seed' in validateSampling({}));
  assert.is(validateSampling({ seed: -3 }).seed, -3);
  // Edge values that are valid.
  const edge = validateSampling({ temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1e-3, seed: 0 });
  assert.equal(edge, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1e-3, seed: 0 });
});

const bad: [keyof SamplingParams, string, unknown[]][] = [
  ['temperature', 'temperature', [NaN, Infinity, -Infinity, -0.1, '1']],
  ['topP', 'top_p', [0, -0.5, 1.01, NaN, Infinity]],
  ['topK', 'top_k', [-1, 2.5, NaN, Infinity]],
  ['minP', 'min_p', [-0.01, 1, 1.5, NaN]],
  ['repetitionPenalty', 'repetition_penalty', [0, -1, NaN, Infinity]],
  ['seed', 'seed', [1.5, NaN, 2 ** 53, Infinity, null]],
];
for (const [key, field, values] of bad) {
  test(`validateSampling rejects bad ${field}`, () => {
    for (const v of values) {
      try {
        validateSampling({ [key]: v } as Partial<SamplingParams>);
        assert.unreachable(`${field} = ${String(v)} was accepted`);
      } catch (e) {
        assert.instance(e, RequestError);
        const err = e as RequestError;
        assert.is(err.code, 'E_REQUEST');
        assert.is(err.info.field, field);
        assert.ok(err.message.includes(`field ${field}`), err.message);
        assert.ok(err.message.includes('expected '), err.message);
        const found = typeof v === 'string' ? JSON.stringify(v) : String(v);
        assert.ok(err.message.includes(`found ${found}`), err.message);
      }
    }
  });
}

// ---- rng ----

test('Rng matches the xoshiro128** and splitmix64 reference C code', () => {
  const r = Rng.fromState([1, 2, 3, 4]);
  assert.equal([0, 1, 2, 3, 4, 5].map(() => r.nextUint32()), [11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  const s = Rng.fromSeed(42);
  assert.equal([0, 1, 2, 3].map(() => s.nextUint32()), [1776835114, 4165204688, 17111135, 2317295270]);
});

test('Rng: same seed same sequence, other seeds and entropy differ, next() in [0, 1)', () => {
  const draw = (r: Rng): number[] => Array.from({ length: 1000 }, () => r.next());
  const a = draw(Rng.fromSeed(7));
  assert.equal(draw(Rng.fromSeed(7)), a);
  assert.not.equal(draw(Rng.fromSeed(8)), a);
  assert.not.equal(draw(Rng.fromEntropy()), draw(Rng.fromEntropy()));
  assert.ok(a.every((x) => x >= 0 && x < 1));
  const mean = a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  // state() resumes the stream exactly.
  const r = Rng.fromSeed(9);
  r.next();
  const resumed = Rng.fromState(r.state());
  assert.equal(draw(resumed), draw(r));
});

// ---- sampler ----

test('greedy (temperature 0) is argmax, ties to the lowest id', () => {
  const s = new Sampler(params({ temperature: 0 }), 5);
  assert.is(s.sample(f32([0.1, 3, -2, 2.9, 1]), []), 1);
  assert.is(s.sample(f32([1, 5, 5, -1, 5]), []), 1);
  assert.is(s.sample(f32([-Infinity, -Infinity, -7, NaN, -Infinity]), []), 2);
  assert.equal([...s.probabilities(f32([0, 0, 9, 0, 0]), [])], [0, 0, 1, 0, 0]);
});

test('seeded sampling is deterministic; different seeds differ', () => {
  const logits = randomLogits(1000, 3);
  const run = (seed: number): number[] => {
    const s = new Sampler(params({ seed, temperature: 1.5 }), 1000);
    return Array.from({ length: 200 }, () => s.sample(logits, []));
  };
  assert.equal(run(11), run(11));
  assert.not.equal(run(11), run(12));
  // Without a seed, two samplers draw different streams.
  const u1 = new Sampler(validateSampling({ temperature: 1.5 }), 1000);
  const u2 = new Sampler(validateSampling({ temperature: 1.5 }), 1000);
  const d1 = Array.from({ length: 200 }, () => u1.sample(logits, []));
  const d2 = Array.from({ length: 200 }, () => u2.sample(logits, []));
  assert.not.equal(d1, d2);
});

function frequencies(s: Sampler, logits: Float32Array, draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[s.sample(logits, [])]++;
  return counts.map((c) => c / draws);
}

test('temperature sampling matches softmax(logits / T) over 20k draws', () => {
  const xs = [1, 2, 0.5, -1, 1.5];
  for (const t of [1, 0.5, 2]) {
    const want = softmax(xs.map((x) => x / t));
    const got = frequencies(new Sampler(params({ temperature: t, seed: 100 + 10 * t }), xs.length), f32(xs), 20000);
    // One standard deviation is at most sqrt(0.25 / 20000) = 0.0035.
    want.forEach((p, i) => assert.ok(Math.abs(got[i] - p) < 0.015, `T=${t} id ${i}: ${got[i]} vs ${p}`));
  }
});

test('sample() frequencies follow probabilities() with every filter on', () => {
  const logits = randomLogits(50, 5);
  const s = new Sampler(params({ temperature: 0.8, topK: 10, topP: 0.9, minP: 0.05, repetitionPenalty: 1.3 }), 50);
  const history = [1, 2, 3, 3];
  const probs = s.probabilities(logits, history);
  const counts = new Array<number>(50).fill(0);
  for (let i = 0; i < 20000; i++) counts[s.sample(logits, history)]++;
  probs.forEach((p, i) => assert.ok(Math.abs(counts[i] / 20000 - p) < 0.015, `id ${i}: ${counts[i] / 20000} vs ${p}`));
});

test('top-k keeps exactly k (plus ties with the k-th, as transformers does)', () => {
  const logits = randomLogits(1001, 6);
  for (const k of [1, 2, 5, 40, 1000]) {
    const probs = new Sampler(params({ topK: k }), 1001).probabilities(logits, []);
    const kept = support(probs);
    assert.is(kept.length, k);
    const sorted = [...logits].sort((a, b) => b - a);
    assert.ok(kept.every((i) => logits[i] >= sorted[k - 1]));
  }
  const tied = new Sampler(params({ topK: 2 }), 5).probabilities(f32([1, 3, 2, 2, 0]), []);
  assert.equal(support(tied), [1, 2, 3]);
  // top_k larger than the unmasked count keeps all of them.
  const few = new Sampler(params({ topK: 4 }), 4).probabilities(f32([1, -Infinity, 2, -Infinity]), []);
  assert.equal(support(few), [0, 2]);
});

test('top-p boundaries', () => {
  const logits = randomLogits(300, 7);
  assert.is(support(new Sampler(params({ topP: 1 }), 300).probabilities(logits, [])).length, 300);
  const tiny = new Sampler(params({ topP: 1e-9 }), 300).probabilities(logits, []);
  assert.equal(support(tiny), [logits.indexOf(Math.max(...logits))]);
  // Exact boundary: four equal tokens (probabilities exactly 0.25). The top two reach 0.5 exactly, so
  // top_p 0.5 keeps two (ties broken towards the lower id); a hair more keeps a third.
  const flat = f32([0, -Infinity, 0, 0, 0]);
  const keep = (p: number): number[] => support(new Sampler(params({ topP: p }), 5).probabilities(flat, []));
  assert.equal(keep(0.5), [0, 2]);
  assert.equal(keep(0.5000001), [0, 2, 3]);
  assert.equal(keep(0.75), [0, 2, 3]);
  assert.equal(keep(0.76), [0, 2, 3, 4]);
  assert.equal(keep(0.25), [0]);
  // Kept tokens are renormalized.
  const probs = new Sampler(params({ topP: 0.5 }), 5).probabilities(flat, []);
  assert.equal([...probs], [0.5, 0, 0.5, 0, 0]);
});

test('min-p drops tokens below minP times the top probability', () => {
  const xs = [0, Math.log(0.5), Math.log(0.2), Math.log(0.09), Math.log(0.5)];
  const probs = new Sampler(params({ minP: 0.1 }), 5).probabilities(f32(xs), []);
  assert.equal(support(probs), [0, 1, 2, 4]);
  const want = softmax([xs[0], xs[1], xs[2], xs[4]]);
  [0, 1, 2, 4].forEach((id, j) => assert.ok(Math.abs(probs[id] - want[j]) < 1e-6));
});

test('repetition penalty: divides positive, multiplies negative, once per distinct id', () => {
  const s = new Sampler(params({ temperature: 0, repetitionPenalty: 2 }), 4);
  // id 0 (4 → 2) now loses to id 1 (3); a negative logit gets more negative, not less.
  assert.is(s.sample(f32([4, 3, -1, -5]), [0]), 1);
  assert.is(s.sample(f32([-1, -1.5, -9, -9]), [0]), 1); // -1 * 2 = -2 < -1.5
  // Seen three times it is still divided once: 4 / 2 = 2 beats 1.9, while 4 / 8 would not.
  assert.is(s.sample(f32([4, 1.9, 0, 0]), [0, 0, 0]), 0);
  // Exact values, through the probabilities at T = 1.
  const t = new Sampler(params({ repetitionPenalty: 2 }), 3);
  const probs = t.probabilities(f32([2, -1, 0.5]), [0, 1, 1, 0]);
  const want = softmax([1, -2, 0.5]);
  want.forEach((p, i) => assert.ok(Math.abs(probs[i] - p) < 1e-6, `id ${i}`));
});

test('-Infinity and NaN logits are masked; degenerate rows fall back to argmax', () => {
  const logits = f32([-Infinity, 1, NaN, 1, -Infinity]);
  const s = new Sampler(params({}), 5);
  for (let i = 0; i < 500; i++) assert.ok([1, 3].includes(s.sample(logits, [])));
  assert.equal([...s.probabilities(logits, [])], [0, 0.5, 0, 0.5, 0]);
  // Nothing finite: token 0, as torch.argmax gives on an all -inf row.
  assert.is(s.sample(f32([-Infinity, NaN, -Infinity, -Infinity, -Infinity]), []), 0);
  // +Infinity wins outright (softmax would be NaN).
  assert.is(s.sample(f32([1, Infinity, 2, Infinity, 0]), []), 1);
  // The penalty keeps -Infinity masked.
  const p = new Sampler(params({ repetitionPenalty: 1.5, topK: 3, topP: 0.9 }), 5);
  for (let i = 0; i < 200; i++) assert.ok([1, 3].includes(p.sample(logits, [0, 1, 2])));
});

test('does not mutate the logits or history', () => {
  const logits = randomLogits(500, 8, 20);
  const copy = logits.slice();
  const history = [3, 3, 7, 100];
  const s = new Sampler(params({ temperature: 0.7, topK: 50, topP: 0.8, minP: 0.02, repetitionPenalty: 1.2 }), 500);
  for (let i = 0; i < 10; i++) s.sample(logits, history);
  assert.equal(logits, copy);
  assert.equal(history, [3, 3, 7, 100]);
});

test('matches the naive reference on random rows (odd sizes, masks, large vocab)', () => {
  const cases: [number, Partial<SamplingParams>][] = [
    [1, { temperature: 0.7 }],
    [7, { topK: 3, topP: 0.6 }],
    [257, { temperature: 1.3, topP: 0.95, repetitionPenalty: 1.1 }],
    [5000, { topP: 0.99 }], // nucleus of thousands: many rounds of the mass quickselect
    [5000, { topP: 0.3, minP: 0.2 }],
    [151_936, { temperature: 0.6, topK: 20, topP: 0.95 }], // Qwen-sized vocab
    [151_936, { topP: 0.9, minP: 0.01, repetitionPenalty: 1.05 }],
    [151_936, { temperature: 0, repetitionPenalty: 1.3 }],
  ];
  cases.forEach(([n, p], c) => {
    const logits = randomLogits(n, 20 + c, n >> 4);
    const history = Array.from({ length: Math.min(n, 64) }, (_, i) => (i * 7919) % n);
    const want = reference(logits, history, params(p));
    const got = new Sampler(params(p), n).probabilities(logits, history);
    assert.equal(support(got), support(want), `case ${c}`);
    for (let i = 0; i < n; i++) {
      if (Math.abs(got[i] - want[i]) > 1e-12) assert.unreachable(`case ${c} id ${i}: ${got[i]} vs ${want[i]}`);
    }
  });
});

test('pick walks the kept ids in ascending id order for the draw, whatever order top-k and top-p left them in', () => {
  const filter = new TokenFilter(5);
  const p = { ...DEFAULT_SAMPLING, topK: 2 };
  const logits = f32([1, 3, -1, 2, 0]); // top-2: ids 1 (weight 1) and 3 (weight e^-1)
  const total = 1 + Math.exp(-1);
  assert.is(filter.pick(p, logits, [], 0), 1);
  assert.is(filter.pick(p, logits, [], 0.99 / total), 1); // inside id 1's share, which comes first
  assert.is(filter.pick(p, logits, [], 1.01 / total), 3);
  assert.is(filter.pick(p, logits, [], 1 - 2 ** -52), 3);
  // Flat logits under top-p: the nucleus is the lowest ids, drawn in their order.
  const flat = f32([2, 2, 2, 2, 2]);
  const nucleus = { ...DEFAULT_SAMPLING, topP: 0.5 }; // ranks 0..2 stay (mass above < 0.5)
  assert.equal([0, 0.34, 0.67, 0.99].map((u) => filter.pick(nucleus, flat, [], u)), [0, 1, 2, 2]);
});

test('pick over a large nucleus (the id walk) and a small one (the sort): the first id, ascending, whose cumulative share passes u', () => {
  const rng = Rng.fromSeed(5);
  const V = 3000;
  const logits = Float32Array.from({ length: V }, () => rng.next() * 6);
  const filter = new TokenFilter(V);
  for (const p of [{ ...DEFAULT_SAMPLING, topP: 0.99 }, { ...DEFAULT_SAMPLING, topP: 0.3, temperature: 0.5 }, { ...DEFAULT_SAMPLING, topK: 30, topP: 0.9 }]) {
    const probs = filter.probabilities(p, logits, []);
    for (const u of [0, 0.25, 0.5, 0.75, 0.999]) {
      let acc = 0;
      let want = -1;
      for (let id = 0; id < V && want < 0; id++) if (probs[id] > 0 && (acc += probs[id]) > u) want = id;
      assert.is(filter.pick(p, logits, [], u), want, `${JSON.stringify(p)}, u ${u}`);
    }
  }
});

test('one uniform per sampled token when temperature > 0, none when greedy; draw() is the one sample() uses', () => {
  const logits = f32([0.5, 1, 0.25, -2]);
  for (const temperature of [0, 0.9]) {
    for (const topK of [0, 1]) {
      const a = new Sampler(params({ temperature, topK, repetitionPenalty: 1.2 }), 4);
      const b = new Sampler(params({ temperature, topK, repetitionPenalty: 1.2 }), 4);
      const filter = new TokenFilter(4);
      const tokens: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t = a.sample(logits, tokens);
        assert.is(filter.pick(b.params, logits, tokens, b.draw()), t);
        tokens.push(t);
      }
      const rngA = new Sampler(params({ temperature, topK }), 4);
      for (let i = 0; i < 20; i++) rngA.sample(logits, []);
      assert.is(rngA.draw(), temperature > 0 ? drawAt(21) : 0, '20 samples drew 20 uniforms (even top-k 1, which keeps one id)');
    }
  }
});

/** The n-th uniform (1-based) of the seed-1 stream. */
function drawAt(n: number): number {
  const rng = Rng.fromSeed(1);
  let u = 0;
  for (let i = 0; i < n; i++) u = rng.next();
  return u;
}

test('rejects logits of the wrong length and history ids outside the vocab', () => {
  const s = new Sampler(params({ repetitionPenalty: 1.2 }), 4);
  assert.throws(() => s.sample(new Float32Array(5), []), /5 logits, its vocabSize is 4/);
  assert.throws(() => s.sample(new Float32Array(4), [1, 4]), /history\[1\] is 4/);
  assert.throws(() => s.sample(new Float32Array(4), [0.5]), /history\[0\] is 0.5/);
  assert.throws(() => new Sampler(params({}), 0), /vocabSize/);
  assert.throws(() => new Sampler({ ...DEFAULT_SAMPLING, topP: 0 }, 4), (e: unknown) => e instanceof RequestError);
});

test.run();
