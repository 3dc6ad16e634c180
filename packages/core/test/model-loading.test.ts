import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  loadModel, ModelFormatError, openWeightFiles, SafetensorsError, sliceTensor, UnsupportedModelError, writeSafetensors, type HostTensor, type ZinferError,
} from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());

/** A copy of a fixture model directory with config.json edited (and files optionally left out). */
function variant(arch: string, edit: (cfg: Record<string, unknown>) => void, skip: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), `zinfer-${arch}-`));
  for (const f of readdirSync(join(FIXTURES, arch))) if (!skip.includes(f)) copyFileSync(join(FIXTURES, arch, f), join(dir, f));
  if (skip.includes('config.json')) return dir;
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  edit(cfg);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

async function rejects(fn: () => Promise<unknown>, cls: new (...a: never[]) => ZinferError, info: Record<string, string | RegExp>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.instance(e, cls, String(e));
    for (const [k, v] of Object.entries(info)) {
      const got = String((e as ZinferError).info[k as 'file']);
      if (v instanceof RegExp) assert.match(got, v, `info.${k} in: ${(e as Error).message}`);
      else assert.is(got, v, `info.${k} in: ${(e as Error).message}`);
    }
    return;
  }
  assert.unreachable(`expected ${cls.name}`);
}

test('every fixture architecture loads: graph built, every weight present with the config shape', async () => {
  assert.ok(ARCHS.length >= 8);
  for (const arch of ARCHS) {
    const m = await loadModel(join(FIXTURES, arch));
    assert.ok(m.graph.nodes.length > 10, arch);
    assert.is(m.graph.values[m.graph.output].width, m.spec.vocabSize, arch);
    for (const name of m.weights.names()) assert.equal([...m.weights.get(name).shape], [...m.graph.weights.get(name)!.shape], `${arch} ${name}`);
    assert.ok(m.tokenizer, `${arch} has a tokenizer`);
    m.weights.close();
  }
});

test('weight slices read from the file equal slices of the whole tensor, for plain and transformed weights', async () => {
  for (const [arch, names] of [
    ['llama3', ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight']],
    ['gpt2', ['transformer.h.0.attn.k_proj.weight', 'transformer.h.1.mlp.c_proj.bias']],
  ] as const) {
    const m = await loadModel(join(FIXTURES, arch));
    for (const name of names) {
      const whole = m.weights.get(name);
      for (let axis = 0; axis < whole.shape.length; axis++) {
        const extent = whole.shape[axis];
        const [start, length] = [Math.floor(extent / 4), Math.ceil(extent / 3)];
        const slice = m.weights.getSlice(name, axis, start, length);
        assert.equal(slice, sliceTensor(whole, axis, start, length), `${arch} ${name} axis ${axis}`);
      }
    }
    m.weights.close();
  }
});

test('stored dtypes stay as stored unless a dtype is asked for', async () => {
  const bf = await loadModel(join(FIXTURES, 'llama3'));
  assert.is(bf.weights.get('model.norm.weight').dtype, 'bf16');
  bf.weights.close();
  const f = await loadModel(join(FIXTURES, 'qwen2'), { dtype: 'f32' });
  assert.is(f.weights.get('model.norm.weight').dtype, 'f32');
  f.weights.close();
});

test('the older config form (rope_theta, rope_scaling, rotary_pct) reads the same as rope_parameters', async () => {
  const rotaryOf = async (dir: string) => (await loadModel(dir)).graph.nodes.find((n) => n.op === 'rotary')!.attrs;
  for (const [arch, legacy] of [
    ['llama3', (c: Record<string, unknown>) => {
      const { rope_theta, ...scaling } = c.rope_parameters as Record<string, unknown>;
      Object.assign(c, { rope_theta, rope_scaling: scaling, rope_parameters: undefined });
    }],
    ['gpt-neox', (c: Record<string, unknown>) => {
      const rp = c.rope_parameters as Record<string, number>;
      Object.assign(c, { rotary_emb_base: rp.rope_theta, rotary_pct: rp.partial_rotary_factor, rope_parameters: undefined });
    }],
  ] as const) {
    const dir = variant(arch, legacy);
    try {
      assert.equal(await rotaryOf(dir), await rotaryOf(join(FIXTURES, arch)), arch);
    } finally {
      rmSync(dir, { recursive: true });
    }
  }
});

test('bad model directories: each a typed error naming the file, tensor or field', async () => {
  const cases: [string, () => string, new (...a: never[]) => ZinferError, Record<string, string | RegExp>][] = [
    ['missing config.json', () => variant('llama2', () => {}, ['config.json']), ModelFormatError, { file: /config\.json$/ }],
    ['unknown architecture', () => variant('llama2', (c) => (c.model_type = 'falcon9')), UnsupportedModelError, { field: 'model_type', found: 'falcon9' }],
    ['wrong field type', () => variant('llama2', (c) => (c.num_hidden_layers = 'two')), ModelFormatError, { field: 'num_hidden_layers' }],
    ['unsupported rope type', () => variant('llama2', (c) => ((c.rope_parameters as Record<string, string>).rope_type = 'yarn')), UnsupportedModelError, { field: 'rope_type', found: 'yarn' }],
    ['shape disagrees with config', () => variant('llama2', (c) => (c.intermediate_size = 130)), ModelFormatError, { tensor: 'model.layers.0.mlp.gate_proj.weight', expected: '[130, 64]', found: '[128, 64]' }],
    ['more layers than the checkpoint', () => variant('llama2', (c) => (c.num_hidden_layers = 3)), ModelFormatError, { tensor: /model\.layers\.2\./ }],
    ['no weights file', () => variant('llama2', () => {}, ['model.safetensors']), ModelFormatError, { expected: /model\.safetensors/ }],
    ['missing shard', () => variant('mistral', () => {}, ['model-00002-of-00003.safetensors']), ModelFormatError, { file: /model-00002-of-00003/ }],
  ];
  for (const [name, make, cls, info] of cases) {
    const dir = make();
    try {
      await rejects(() => loadModel(dir), cls, info);
    } catch (e) {
      (e as Error).message = `${name}: ${(e as Error).message}`;
      throw e;
    } finally {
      rmSync(dir, { recursive: true });
    }
  }
});

test('a missing tensor is named', async () => {
  const dir = variant('llama2', () => {}, ['model.safetensors']);
  try {
    const files = openWeightFiles(join(FIXTURES, 'llama2'));
    const tensors: Record<string, HostTensor> = {};
    for (const n of files.names()) if (n !== 'model.norm.weight') tensors[n] = files.read(n);
    files.close();
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    await rejects(() => loadModel(dir), ModelFormatError, { tensor: 'model.norm.weight' });
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('truncated safetensors and an unknown stored dtype are SafetensorsErrors naming the file', async () => {
  const dir = variant('gpt2', () => {});
  try {
    const file = join(dir, 'model.safetensors');
    truncateSync(file, statSync(file).size - 100);
    await rejects(() => loadModel(dir), SafetensorsError, { file: /model\.safetensors$/, expected: /\d+/ });
    const header = JSON.stringify({ 'transformer.wte.weight': { dtype: 'F64', shape: [1], data_offsets: [0, 8] } });
    const buf = Buffer.alloc(8 + header.length + 8);
    buf.writeBigUInt64LE(BigInt(header.length));
    buf.write(header, 8);
    writeFileSync(file, buf);
    await rejects(() => loadModel(dir), SafetensorsError, { tensor: 'transformer.wte.weight', found: /F64/ });
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test.run();
