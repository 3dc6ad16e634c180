// The weights of a Hugging Face model directory, in either standard layout: one `model.safetensors`,
// or shards listed by `model.safetensors.index.json` (weight_map: tensor name → shard file).
// Shards are opened on first use, so loading a slice of a model (one pipeline stage, some experts)
// only touches the files it needs; missing shards are still reported up front.

import fs from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { FloatDType } from './dtype.js';
import { ModelFormatError } from './errors.js';
import { SafetensorsFile } from './safetensors.js';
import type { HostTensor } from './tensor.js';

export const WEIGHTS_INDEX = 'model.safetensors.index.json';
export const WEIGHTS_SINGLE = 'model.safetensors';

export interface StoredTensorInfo {
  dtype: FloatDType;
  shape: number[];
  /** Path of the safetensors file that holds the tensor. */
  file: string;
}

export interface WeightFiles {
  names(): string[];
  has(name: string): boolean;
  info(name: string): StoredTensorInfo;
  read(name: string): HostTensor;
  /** Only a slice along axis 0 or 1 of a 1-D/2-D tensor, reading only its bytes. */
  readSlice(name: string, axis: number, start: number, length: number): HostTensor;
  close(): void;
}

export function openWeightFiles(dir: string): WeightFiles {
  const index = join(dir, WEIGHTS_INDEX);
  if (isFile(index)) return new LazyWeights(dir, index, readIndex(dir, index));
  const single = join(dir, WEIGHTS_SINGLE);
  if (isFile(single)) return new LazyWeights(dir, undefined, undefined, single);
  throw new ModelFormatError('model directory has no safetensors weights', {
    file: dir, expected: `${WEIGHTS_INDEX} or ${WEIGHTS_SINGLE}`, found: 'neither',
  });
}

/** weight_map as tensor name → shard path, with every shard checked to exist. */
function readIndex(dir: string, index: string): Map<string, string> {
  const bad = (message: string, expected: string, found: string) =>
    new ModelFormatError(message, { file: index, field: 'weight_map', expected, found });
  let root: unknown;
  try {
    root = JSON.parse(fs.readFileSync(index, 'utf8'));
  } catch (e) {
    throw new ModelFormatError('weights index is not valid JSON', { file: index, expected: 'JSON', found: String((e as Error).message) });
  }
  const weightMap = isObject(root) ? root.weight_map : undefined;
  if (!isObject(weightMap)) throw bad('weights index has no weight_map object', 'an object of tensor name → shard file', kind(weightMap));
  const map = new Map<string, string>();
  const shards = new Set<string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    // Shards live in the model directory; a path that escapes it is a broken or hostile index.
    if (typeof shard !== 'string' || shard === '' || isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
      throw new ModelFormatError('weights index maps a tensor to an invalid shard file', {
        file: index, tensor: name, field: 'weight_map', expected: 'a file name inside the model directory',
        found: typeof shard === 'string' ? JSON.stringify(shard) : typeof shard,
      });
    }
    map.set(name, join(dir, shard));
    shards.add(shard);
  }
  for (const shard of shards) {
    if (!isFile(join(dir, shard))) {
      throw new ModelFormatError(`shard listed in ${index} is missing`, {
        file: join(dir, shard), field: 'weight_map', expected: `the shard file referenced by ${index}`, found: 'file not found',
      });
    }
  }
  return map;
}

class LazyWeights implements WeightFiles {
  private readonly open = new Map<string, SafetensorsFile>(); // shard path → opened file
  private closed = false;

  constructor(
    private readonly dir: string,
    private readonly index: string | undefined,
    /** tensor → shard path; for a single file it is filled from that file's header on first use. */
    private map: Map<string, string> | undefined,
    private readonly single?: string,
  ) {}

  names(): string[] {
    return [...this.tensorMap().keys()];
  }

  has(name: string): boolean {
    return this.tensorMap().has(name);
  }

  info(name: string): StoredTensorInfo {
    const file = this.fileOf(name);
    const e = this.shard(file).entries.get(name)!; // shard() checked every tensor mapped to it
    return { dtype: e.dtype, shape: [...e.shape], file };
  }

  read(name: string): HostTensor {
    return this.shard(this.fileOf(name)).read(name);
  }

  readSlice(name: string, axis: number, start: number, length: number): HostTensor {
    return this.shard(this.fileOf(name)).readSlice(name, axis, start, length);
  }

  close(): void {
    this.closed = true;
    for (const f of this.open.values()) f.close();
    this.open.clear();
  }

  private tensorMap(): Map<string, string> {
    if (this.closed) throw new ModelFormatError('weight files are closed', { file: this.dir, expected: 'open weight files', found: 'closed' });
    if (!this.map) {
      const file = this.shard(this.single!);
      this.map = new Map([...file.entries.keys()].map((name) => [name, file.path]));
    }
    return this.map;
  }

  private fileOf(name: string): string {
    const file = this.tensorMap().get(name);
    if (file === undefined) {
      throw new ModelFormatError('missing tensor', { file: this.index ?? this.single, tensor: name, expected: 'a tensor in the model weights', found: 'missing tensor' });
    }
    return file;
  }

  private shard(path: string): SafetensorsFile {
    let file = this.open.get(path);
    if (file) return file;
    file = SafetensorsFile.open(path);
    // Check the index against the shard once, so info/read can trust the weight_map afterwards.
    if (this.map) {
      for (const [name, shard] of this.map) {
        if (shard === path && !file.entries.has(name)) {
          file.close();
          throw new ModelFormatError(`tensor listed in ${this.index} is absent from its shard`, {
            file: path, tensor: name, expected: `the tensor, as ${this.index} says`, found: 'missing tensor',
          });
        }
      }
    }
    this.open.set(path, file);
    return file;
  }
}

function isFile(path: string): boolean {
  return fs.statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
}

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
