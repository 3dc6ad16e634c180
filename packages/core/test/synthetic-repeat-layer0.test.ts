// Synthetic models with repeatLayer0 (the multi-GPU benches' fast load): every decoder layer serves layer
// 0's values, whole or sliced exactly as layer 0's own slices; tensors outside the layers keep their own;
// the flag round-trips through zinfer-synthetic.json and a bad value names its field.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModel, ModelFormatError, readSyntheticSpec, writeSyntheticModel, type HostTensor } from '../src/index.js';

const TINY = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 48, intermediate_size: 45, num_attention_heads: 6,
  num_key_value_heads: 3, num_hidden_layers: 3, vocab_size: 101, max_position_embeddings: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
};
const dir = (repeatLayer0: boolean) => writeSyntheticModel(mkdtempSync(join(tmpdir(), 'zinfer-repeat-')), TINY, { seed: 3, dtype: 'f16', repeatLayer0 });
const same = (a: HostTensor, b: HostTensor) => a.shape.join() === b.shape.join() && a.data.every((x, i) => x === b.data[i]);

test('every layer serves layer 0\'s tensors and slices; other tensors and plain models are unchanged', async () => {
  const [rep, plain] = [await loadModel(dir(true)), await loadModel(dir(false))];
  const names = rep.weights.names();
  const l0 = names.filter((n) => n.includes('layers.0.'));
  assert.ok(l0.length >= 9);
  for (const n of l0) {
    for (const l of [1, 2]) {
      const other = n.replace('layers.0.', `layers.${l}.`);
      assert.ok(same(rep.weights.get(other), rep.weights.get(n)), other);
      assert.ok(same(rep.weights.get(other), plain.weights.get(n)), `${other}: layer 0's values of the plain model`);
      const t = plain.weights.get(n);
      const axis = t.shape.length - 1;
      assert.ok(same(rep.weights.getSlice!(other, axis, 1, t.shape[axis] - 2), plain.weights.getSlice!(n, axis, 1, t.shape[axis] - 2)), `${other} slice`);
    }
  }
  const l1 = names.find((n) => n.includes('layers.1.') && n.endsWith('proj.weight'))!;
  assert.not.ok(same(plain.weights.get(l1), plain.weights.get(l1.replace('layers.1.', 'layers.0.'))), 'plain layers differ');
  for (const n of names.filter((x) => !x.includes('layers.'))) assert.ok(same(rep.weights.get(n), plain.weights.get(n)), n);
  rep.weights.close();
  plain.weights.close();
});

test('repeatLayer0 round-trips through the spec file; a non-boolean is refused naming the field', () => {
  assert.is(readSyntheticSpec(dir(true))!.repeatLayer0, true);
  assert.is(readSyntheticSpec(dir(false))!.repeatLayer0, undefined);
  const d = dir(false);
  writeFileSync(join(d, 'zinfer-synthetic.json'), JSON.stringify({ seed: 1, dtype: 'f16', repeatLayer0: 'yes' }));
  try {
    readSyntheticSpec(d);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, ModelFormatError);
    assert.is((e as ModelFormatError).info.field, 'repeatLayer0');
  }
});

test.run();
