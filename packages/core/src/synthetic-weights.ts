// Synthetic-weight models: a model directory with config.json and `zinfer-synthetic.json`
// ({"seed": n, "dtype": "f16" | "bf16" | "f32", "std": 0.02}) and no safetensors loads with
// deterministic pseudo-random weights generated on demand. Benchmarks of 13B–70B shapes then need no
// checkpoint on disk, and tensor-parallel ranks generate only their own shards, in parallel: every
// element is a pure function of (seed, tensor name, flat index), so getSlice equals slicing get().
// Names and shapes come from the architecture's weight recipes (the same list a real checkpoint is
// checked against), so a synthetic directory has exactly the tensors the graph expects.
// Values: matrices, embeddings and biases N(0, std²); 1-D `*.weight` tensors (norm scales) N(1, std²).
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WeightRecipe } from './architectures/types.js';
import { isFloatDType, type FloatDType } from './dtype.js';
import { ModelFormatError } from './errors.js';
import { fillSynthetic, quantileTable, tensorKey, type SyntheticCenter } from './synthetic-fill.js';
import { hostTensor, numel, shapeString, type HostTensor } from './tensor.js';
import { WEIGHTS_INDEX, WEIGHTS_SINGLE, type StoredTensorInfo, type WeightFiles } from './weight-files.js';

export const SYNTHETIC_WEIGHTS_FILE = 'zinfer-synthetic.json';

export interface SyntheticWeightsSpec {
  /** Seeds every tensor (with its name): the same seed gives the same model. */
  seed: number;
  /** Stored dtype of every tensor. */
  dtype: FloatDType;
  /** Standard deviation of the values around their centre (default 0.02, transformers' initializer_range). */
  std: number;
  /**
   * Benchmarks only: every decoder layer serves layer 0's values (generated once, then reused), since at
   * ~0.3 GB/s a core generation is most of a large model's load time and values do not change timings.
   */
  repeatLayer0?: boolean;
}

/** Reads and checks `zinfer-synthetic.json`; null when the directory has none. */
export function readSyntheticSpec(dir: string): SyntheticWeightsSpec | null {
  const file = join(dir, SYNTHETIC_WEIGHTS_FILE);
  if (!isFile(file)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelFormatError(`${SYNTHETIC_WEIGHTS_FILE} is not valid JSON`, { file, expected: 'JSON', found: (e as Error).message });
  }
  const bad = (field: string, expected: string, v: unknown) => new ModelFormatError(`${SYNTHETIC_WEIGHTS_FILE} has a bad field`, { file, field, expected, found: JSON.stringify(v) ?? 'undefined' });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('(root)', 'an object {"seed", "dtype", "std"}', raw);
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['seed', 'dtype', 'std', 'repeatLayer0'].includes(k)) throw bad(k, 'only seed, dtype, std and repeatLayer0', o[k]);
  if (o.repeatLayer0 !== undefined && typeof o.repeatLayer0 !== 'boolean') throw bad('repeatLayer0', 'true or false', o.repeatLayer0);
  if (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed) || o.seed < 0) throw bad('seed', 'a non-negative integer', o.seed);
  if (typeof o.dtype !== 'string' || !isFloatDType(o.dtype)) throw bad('dtype', '"f16", "bf16" or "f32"', o.dtype);
  const std = o.std ?? 0.02;
  if (typeof std !== 'number' || !Number.isFinite(std) || std <= 0 || std > 16) throw bad('std', 'a number in (0, 16]', std);
  return { seed: o.seed, dtype: o.dtype, std, ...(o.repeatLayer0 ? { repeatLayer0: true } : {}) };
}

/** Writes a synthetic model directory: config.json (a Hugging Face config object) and the spec file. */
export function writeSyntheticModel(dir: string, config: Record<string, unknown>, spec: Partial<SyntheticWeightsSpec> & { seed: number; dtype: FloatDType }): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(join(dir, SYNTHETIC_WEIGHTS_FILE), `${JSON.stringify({ seed: spec.seed, dtype: spec.dtype, std: spec.std ?? 0.02, ...(spec.repeatLayer0 ? { repeatLayer0: true } : {}) })}\n`);
  return dir;
}

/**
 * The generated weights of a synthetic model directory, as the checkpoint tensors the recipes name
 * (their sourceShape when a transform makes the graph weight); null when `dir` is not synthetic.
 */
export function openSyntheticWeights(dir: string, recipes: readonly WeightRecipe[]): WeightFiles | null {
  const spec = readSyntheticSpec(dir);
  if (!spec) return null;
  const stored = [WEIGHTS_SINGLE, WEIGHTS_INDEX].find((f) => isFile(join(dir, f)));
  if (stored) {
    throw new ModelFormatError('model directory holds both synthetic and stored weights', {
      file: join(dir, stored), expected: `${SYNTHETIC_WEIGHTS_FILE} or safetensors, not both`, found: 'both',
    });
  }
  return new SyntheticWeightFiles(join(dir, SYNTHETIC_WEIGHTS_FILE), spec, recipes);
}

export class SyntheticWeightFiles implements WeightFiles {
  private readonly shapes = new Map<string, readonly number[]>();
  private closed = false;

  constructor(private readonly file: string, readonly spec: SyntheticWeightsSpec, recipes: readonly WeightRecipe[]) {
    for (const r of recipes) this.shapes.set(r.source, r.sourceShape ?? r.shape);
  }

  names(): string[] {
    return [...this.shapes.keys()];
  }

  has(name: string): boolean {
    return this.shapes.has(name);
  }

  info(name: string): StoredTensorInfo {
    return { dtype: this.spec.dtype, shape: [...this.shape(name)], file: this.file };
  }

  read(name: string): HostTensor {
    const shape = this.shape(name);
    const layer0 = this.layerZero(name);
    if (layer0 !== name) return this.repeated(`${layer0}`, () => this.read(layer0));
    const out = hostTensor(this.spec.dtype, shape);
    fillSynthetic(out.data, 0, tensorKey(this.spec.seed, name), this.table(name, shape), 0, out.data.length);
    return out;
  }

  /** Generates only the slice: for each index before `axis`, one contiguous run of the flat tensor. */
  readSlice(name: string, axis: number, start: number, length: number): HostTensor {
    const shape = this.shape(name);
    if (!Number.isInteger(axis) || axis < 0 || axis >= shape.length || !Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > shape[axis]) {
      throw new ModelFormatError('slice outside the tensor', {
        file: this.file, tensor: name, expected: `axis < ${shape.length}, range within ${shapeString(shape)}`, found: `axis ${axis}, [${start}, ${start + length})`,
      });
    }
    const layer0 = this.layerZero(name);
    if (layer0 !== name) return this.repeated(`${layer0}|${axis}|${start}|${length}`, () => this.readSlice(layer0, axis, start, length));
    const outer = numel(shape.slice(0, axis));
    const inner = numel(shape.slice(axis + 1));
    const out = hostTensor(this.spec.dtype, shape.map((d, i) => (i === axis ? length : d)));
    const key = tensorKey(this.spec.seed, name);
    const table = this.table(name, shape);
    const run = length * inner;
    for (let o = 0; o < outer; o++) fillSynthetic(out.data, o * run, key, table, (o * shape[axis] + start) * inner, run);
    return out;
  }

  close(): void {
    this.closed = true;
    this.repeats.clear();
  }

  /** Layer 0's tensors (or slices) served to every layer with repeatLayer0; one layer's worth is kept. */
  private readonly repeats = new Map<string, HostTensor>();

  /** The layer-0 name whose values `name` takes: itself unless repeatLayer0 and a decoder layer's tensor. */
  private layerZero(name: string): string {
    if (!this.spec.repeatLayer0) return name;
    const zero = name.replace(/(^|\.)(layers|h)\.\d+\./, '$1$2.0.');
    return this.shapes.has(zero) ? zero : name;
  }

  private repeated(key: string, make: () => HostTensor): HostTensor {
    let t = this.repeats.get(key);
    if (!t) this.repeats.set(key, (t = make()));
    return { dtype: t.dtype, shape: [...t.shape], data: t.data }; // shared data: readers copy, never write
  }

  private shape(name: string): readonly number[] {
    if (this.closed) throw new ModelFormatError('weight files are closed', { file: this.file, tensor: name, expected: 'open weight files', found: 'closed' });
    const shape = this.shapes.get(name);
    if (!shape) throw new ModelFormatError('missing tensor', { file: this.file, tensor: name, expected: 'a tensor the architecture names', found: 'missing tensor' });
    return shape;
  }

  private table(name: string, shape: readonly number[]) {
    const center: SyntheticCenter = shape.length === 1 && name.endsWith('weight') ? 1 : 0;
    return quantileTable(this.spec.dtype, this.spec.std, center);
  }
}

function isFile(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
}
