// Turns an architecture's weight recipes and a model directory's safetensors into the graph's weights.
// Everything that can be checked from headers alone (presence, shapes, dtypes) is checked before any
// tensor is read, so a bad checkpoint fails in milliseconds with the tensor and file named.
import type { WeightRecipe } from './architectures/types.js';
import type { WeightSource } from './contracts.js';
import { fromF32, toF32, type FloatDType } from './dtype.js';
import { ModelFormatError } from './errors.js';
import type { WeightName } from './ops.js';
import { shapeString, sliceTensor, type HostTensor } from './tensor.js';
import type { WeightFiles } from './weight-files.js';

// Checkpoints saved by other tools drop or add the model prefix ("transformer.h.0" vs "h.0").
const PREFIXES = ['transformer.', 'model.', 'gpt_neox.'];

export interface ModelWeightsOptions {
  /** Convert weights to this dtype while loading; default: keep the stored dtype. */
  dtype?: FloatDType;
  /** The model directory, named in errors. */
  dir?: string;
  /** Called after each weight is read: (done, total, name). */
  onProgress?: (done: number, total: number, name: WeightName) => void;
}

export class ModelWeights implements WeightSource {
  private readonly recipes = new Map<WeightName, WeightRecipe>();
  private readonly sources = new Map<WeightName, string>();
  private loaded = 0;

  constructor(private readonly files: WeightFiles, recipes: readonly WeightRecipe[], private readonly opts: ModelWeightsOptions = {}) {
    for (const r of recipes) {
      this.recipes.set(r.name, r);
      this.sources.set(r.name, this.check(r));
    }
  }

  names(): WeightName[] {
    return [...this.recipes.keys()];
  }

  get(name: WeightName): HostTensor {
    const recipe = this.recipe(name);
    const raw = this.files.read(this.sources.get(name)!);
    return this.finish(name, recipe.transform ? recipe.transform(raw) : raw);
  }

  /** A shard of a weight; weights stored as the graph uses them are sliced in the file, not in memory. */
  getSlice(name: WeightName, axis: number, start: number, length: number): HostTensor {
    const recipe = this.recipe(name);
    const source = this.sources.get(name)!;
    if (!recipe.transform) return this.finish(name, this.files.readSlice(source, axis, start, length));
    return this.finish(name, sliceTensor(recipe.transform(this.files.read(source)), axis, start, length));
  }

  /** The dtype get() returns, from the file headers (and the conversion asked for). */
  dtypeOf(name: WeightName): FloatDType {
    this.recipe(name);
    return this.opts.dtype ?? this.files.info(this.sources.get(name)!).dtype;
  }

  private recipe(name: WeightName): WeightRecipe {
    const recipe = this.recipes.get(name);
    if (!recipe) throw new ModelFormatError('the graph asked for a weight the model does not have', { tensor: name });
    return recipe;
  }

  private finish(name: WeightName, t: HostTensor): HostTensor {
    if (this.opts.dtype && this.opts.dtype !== t.dtype) t = { dtype: this.opts.dtype, shape: t.shape, data: fromF32(this.opts.dtype, toF32(t.dtype, t.data)) };
    this.opts.onProgress?.(++this.loaded, this.recipes.size, name);
    return t;
  }

  /** Total bytes of the weights as stored (after any dtype conversion). */
  byteSize(): number {
    let n = 0;
    for (const r of this.recipes.values()) n += r.shape.reduce((a, b) => a * b, 1) * (this.opts.dtype === 'f32' ? 4 : this.opts.dtype ? 2 : bytesOf(this.files.info(this.sources.get(r.name)!).dtype));
    return n;
  }

  close(): void {
    this.files.close();
  }

  private check(r: WeightRecipe): string {
    const source = this.resolve(r.source);
    const info = this.files.info(source);
    const want = r.sourceShape ?? r.shape;
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      throw new ModelFormatError('tensor shape disagrees with config.json', {
        file: info.file, tensor: source, expected: shapeString(want), found: shapeString(info.shape),
      });
    }
    return source;
  }

  private resolve(source: string): string {
    if (this.files.has(source)) return source;
    const bare = PREFIXES.reduce((s, p) => (s.startsWith(p) ? s.slice(p.length) : s), source);
    const candidates = [bare, ...PREFIXES.map((p) => p + bare)];
    const found = candidates.find((c) => this.files.has(c));
    if (found) return found;
    throw new ModelFormatError('a tensor the architecture needs is missing from the checkpoint', {
      file: this.opts.dir, tensor: source, expected: 'present in the safetensors files', found: 'missing',
    });
  }
}

function bytesOf(d: FloatDType): number {
  return d === 'f32' ? 4 : 2;
}
