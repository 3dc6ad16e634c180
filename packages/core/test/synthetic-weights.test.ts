// Synthetic-weight model directories: deterministic weights generated on demand, slices generated alone
// that equal slices of the whole tensor, the graph's exact names and shapes, an engine run identical to
// the same weights stored as safetensors, and a bad zinfer-synthetic.json named field by field.
import { copyFileSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createEngine, fetchGraphWeight, loadModel, ModelFormatError, sliceTensor, SyntheticWeightFiles, toF32, writeSafetensors, writeSyntheticModel,
  type Graph, type HostTensor, type KernelBackend, type Program, type StepBatch, type WeightSource, type ZinferError,
} from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');

/** A small Llama with odd sizes everywhere a slice can land: vocab 101, intermediate 45, 3 KV heads. */
const TINY = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 48, intermediate_size: 45, num_attention_heads: 6,
  num_key_value_heads: 3, num_hidden_layers: 2, vocab_size: 101, max_position_embeddings: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
};

const tmp = (tag: string) => mkdtempSync(join(tmpdir(), `zinfer-synthetic-${tag}-`));
const tiny = (seed = 7, dtype: 'f16' | 'bf16' | 'f32' = 'f16') => writeSyntheticModel(tmp(dtype), TINY, { seed, dtype, std: 0.02 });
const same = (a: HostTensor, b: HostTensor) => a.dtype === b.dtype && a.shape.join() === b.shape.join() && a.data.every((x, i) => x === b.data[i]);

function meanStd(t: HostTensor): [number, number] {
  const x = toF32(t.dtype, t.data);
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  return [mean, Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length)];
}

test('the same seed gives the same weights; another seed others; values are N(0, std) and norms near 1', async () => {
  const [a, b, c] = [await loadModel(tiny(7)), await loadModel(tiny(7)), await loadModel(tiny(8))];
  for (const name of a.weights.names()) {
    assert.ok(same(a.weights.get(name), b.weights.get(name)), name);
    assert.not.ok(same(a.weights.get(name), c.weights.get(name)), name);
  }
  const [m, s] = meanStd(a.weights.get('model.layers.0.mlp.down_proj.weight'));
  assert.ok(Math.abs(m) < 0.002 && Math.abs(s - 0.02) < 0.002, `mean ${m} std ${s}`);
  const [nm, ns] = meanStd(a.weights.get('model.layers.1.input_layernorm.weight'));
  assert.ok(Math.abs(nm - 1) < 0.01 && ns > 0.01 && ns < 0.03, `norm mean ${nm} std ${ns}`);
  const q = a.weights.get('model.layers.0.self_attn.q_proj.weight');
  assert.not.ok(same(q, a.weights.get('model.layers.1.self_attn.q_proj.weight')), 'layers differ');
  assert.is(q.dtype, 'f16');
});

test('an f32 model and an f16 model of one seed hold the same values up to f16 rounding', async () => {
  const [h, f] = [await loadModel(tiny(3, 'f16')), await loadModel(tiny(3, 'f32'))];
  const name = 'model.layers.0.self_attn.o_proj.weight';
  const x16 = toF32('f16', h.weights.get(name).data);
  const x32 = f.weights.get(name).data as Float32Array;
  assert.ok(x32.every((v, i) => Math.abs(v - x16[i]) <= Math.abs(v) * 2 ** -11 + 1e-7), 'f16 is f32 rounded');
});

test('getSlice generates exactly the slice of get(), on both axes, odd starts and lengths, every dtype', async () => {
  for (const dtype of ['f16', 'bf16', 'f32'] as const) {
    const m = await loadModel(tiny(11, dtype));
    for (const name of m.weights.names()) {
      const whole = m.weights.get(name);
      for (let axis = 0; axis < whole.shape.length; axis++) {
        const n = whole.shape[axis];
        for (const [start, length] of [[0, n], [1, n - 2], [3, 5], [n - 1, 1], [Math.floor(n / 3), Math.ceil(n / 3)]]) {
          const slice = m.weights.getSlice(name, axis, start, length);
          assert.ok(same(slice, sliceTensor(whole, axis, start, length)), `${dtype} ${name} axis ${axis} [${start}, ${start + length})`);
        }
      }
    }
  }
});

test('slices of 3-D tensors and out-of-range slices', () => {
  const files = new SyntheticWeightFiles('spec.json', { seed: 5, dtype: 'bf16', std: 0.5 }, [{ name: 'experts', shape: [3, 7, 9], source: 'experts' }]);
  const whole = files.read('experts');
  const at = (i: number, j: number, k: number) => whole.data[(i * 7 + j) * 9 + k];
  for (const [axis, start, length] of [[0, 1, 2], [1, 3, 3], [2, 1, 7], [2, 4, 1]]) {
    const s = files.readSlice('experts', axis, start, length);
    const [d0, d1, d2] = s.shape;
    for (let i = 0; i < d0; i++) for (let j = 0; j < d1; j++) for (let k = 0; k < d2; k++) {
      const src = [i, j, k];
      src[axis] += start;
      assert.is(s.data[(i * d1 + j) * d2 + k], at(src[0], src[1], src[2]), `axis ${axis} at ${src}`);
    }
  }
  for (const [axis, start, length] of [[3, 0, 1], [1, 5, 3], [0, -1, 1]]) {
    try {
      files.readSlice('experts', axis, start, length);
      assert.unreachable('out of range');
    } catch (e) {
      assert.instance(e, ModelFormatError);
      assert.is((e as ZinferError).info.tensor, 'experts');
    }
  }
});

test('every fixture architecture loads synthetic: the graph\'s exact weight names and shapes', async () => {
  const archs = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
  assert.ok(archs.length >= 8);
  for (const arch of archs) {
    const dir = tmp(arch);
    copyFileSync(join(FIXTURES, arch, 'config.json'), join(dir, 'config.json'));
    writeFileSync(join(dir, 'zinfer-synthetic.json'), '{"seed": 1, "dtype": "bf16"}');
    const m = await loadModel(dir);
    assert.equal(new Set(m.weights.names()), new Set(m.graph.weights.keys()), arch);
    for (const [name, info] of m.graph.weights) assert.equal([...m.weights.get(name).shape], [...info.shape], `${arch} ${name}`);
    assert.is(m.tokenizer, null);
    m.weights.close();
  }
});

/**
 * A backend whose "model" is the embedding row of the last token times the LM head (so greedy tokens
 * follow the weights) and that keeps every weight it compiled, fetched the way real backends fetch them.
 */
function weightBackend(): KernelBackend & { weights: Map<string, Float32Array> } {
  const weights = new Map<string, Float32Array>();
  return {
    name: 'weights', contractVersion: 1, weights,
    probe: async () => ({ device: 'cpu', description: 'test', memoryBytes: 1 << 30 }),
    supports: () => true,
    kvBytesPerBlock: (g: Graph, bs: number) => 2 * g.kv.layers * bs * g.kv.kvHeads * g.kv.headDim * 4,
    async compile(graph: Graph, source: WeightSource): Promise<Program> {
      for (const name of graph.weights.keys()) {
        const t = fetchGraphWeight(graph, source, name);
        weights.set(name, toF32(t.dtype, t.data));
      }
      const [embed, head] = [weights.get('model.embed_tokens.weight')!, weights.get('lm_head.weight')!];
      const [vocab, hidden] = graph.weights.get('lm_head.weight')!.shape;
      return {
        async run(batch: StepBatch) {
          const out = new Float32Array(batch.selectedRows.length * vocab);
          batch.selectedRows.forEach((r, i) => {
            const x = embed.subarray(batch.tokenIds[r] * hidden, (batch.tokenIds[r] + 1) * hidden);
            for (let v = 0; v < vocab; v++) for (let k = 0; k < hidden; k++) out[i * vocab + v] += x[k] * head[v * hidden + k];
          });
          return out;
        },
        async dispose() {},
      };
    },
  };
}

test('an engine run on a synthetic tiny Llama equals the run on the same weights stored as safetensors', async () => {
  const dir = tiny(21, 'bf16');
  const stored = tmp('stored');
  copyFileSync(join(dir, 'config.json'), join(stored, 'config.json'));
  const m = await loadModel(dir);
  writeSafetensors(join(stored, 'model.safetensors'), Object.fromEntries(m.weights.names().map((n) => [n, m.weights.get(n)])));
  const run = async (model: string) => {
    const backend = weightBackend();
    const e = await createEngine({ model, backend, dtype: 'f32', limits: { kvCacheBytes: 1 << 20 } });
    const r = await e.generate({ inputIds: [5, 9, 13], maxTokens: 10, temperature: 0, ignoreEos: true }).result;
    await e.close();
    return { tokens: r.tokens, backend };
  };
  const [a, b] = [await run(dir), await run(stored)];
  assert.equal(a.tokens, b.tokens);
  assert.is(a.tokens.length, 10);
  assert.ok(new Set(a.tokens).size > 1, `tokens follow the weights: ${a.tokens}`);
  assert.is(a.backend.weights.size, b.backend.weights.size);
  for (const [name, w] of a.backend.weights) assert.ok(w.every((x, i) => x === b.backend.weights.get(name)![i]), name);
});

test('a bad zinfer-synthetic.json is a ModelFormatError naming the field; stored and synthetic weights together are refused', async () => {
  const cases: [string, string | undefined][] = [
    ['{"seed": 1, "dtype": "f64"}', 'dtype'], ['{"seed": -1, "dtype": "f16"}', 'seed'], ['{"seed": 1.5, "dtype": "f16"}', 'seed'],
    ['{"dtype": "f16"}', 'seed'], ['{"seed": 1, "dtype": "f16", "std": 0}', 'std'], ['{"seed": 1, "dtype": "f16", "sed": 2}', 'sed'],
    ['[1, 2]', '(root)'], ['{"seed": 1,', undefined],
  ];
  for (const [text, field] of cases) {
    const dir = tiny();
    writeFileSync(join(dir, 'zinfer-synthetic.json'), text);
    try {
      await loadModel(dir);
      assert.unreachable(text);
    } catch (e) {
      assert.instance(e, ModelFormatError, `${text}: ${e}`);
      assert.is((e as ZinferError).info.field, field, `${text}: ${(e as Error).message}`);
      assert.match((e as ZinferError).info.file!, /zinfer-synthetic\.json$/);
    }
  }
  const both = tiny();
  writeFileSync(join(both, 'model.safetensors'), '');
  try {
    await loadModel(both);
    assert.unreachable('both');
  } catch (e) {
    assert.instance(e, ModelFormatError);
    assert.match((e as ZinferError).info.file!, /model\.safetensors$/);
  }
});

test.run();
