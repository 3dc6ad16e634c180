// Random-weight Llama checkpoints for benchmarks: a Hugging Face directory (config.json, safetensors,
// no tokenizer) written tensor by tensor in bounded memory, cached under bench/tmp/<shape>-<dtype>/ and
// reused while its stamp matches. Values are seeded and "normal-ish" (Irwin–Hall sum of four bytes of
// one xorshift draw, looked up in a table of already-converted words), so 1.1B of them take seconds.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32ToBf16, f32ToF16, type FloatDType } from '@zinfer/core';
import { BENCH_SHAPES, llamaConfigJson, llamaTensors, paramCount, type BenchShapeName, type TensorInit, type TensorPlan } from './model-shapes.js';
import { tensorBytes, writeSafetensorsStreaming } from './safetensors-stream.js';

/** Bump when the bytes written for the same options change, so older caches are regenerated. */
const GENERATOR_VERSION = 1;
const STAMP = 'zinfer-random-model.json';
const DEFAULT_MAX_SHARD_BYTES = 2 * 2 ** 30;

export interface RandomModelOptions {
  shape: BenchShapeName;
  dtype: FloatDType;
  /** Parent folder of the cache; the model goes to <cacheDir>/<shape>-<dtype>. */
  cacheDir: string;
  seed?: number;
  /** Largest shard; a checkpoint that fits in one is written as model.safetensors (default 2 GiB). */
  maxShardBytes?: number;
  /** Called once per tensor written, e.g. for a progress line. */
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface RandomModel {
  dir: string;
  /** True when an existing cache was reused and nothing was written. */
  reused: boolean;
  params: number;
  /** Bytes of tensor data (headers excluded). */
  weightBytes: number;
  shards: number;
}

export function ensureRandomModel(o: RandomModelOptions): RandomModel {
  const tensors = llamaTensors(BENCH_SHAPES[o.shape]);
  const stamp = {
    generator: GENERATOR_VERSION, shape: o.shape, dtype: o.dtype, seed: o.seed ?? 0,
    maxShardBytes: o.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES, config: llamaConfigJson(BENCH_SHAPES[o.shape], o.dtype),
  };
  const shards = planShards(tensors, o.dtype, stamp.maxShardBytes);
  const dir = join(o.cacheDir, `${o.shape}-${o.dtype}`);
  const info = { dir, params: paramCount(tensors), weightBytes: tensors.reduce((n, t) => n + tensorBytes(t, o.dtype), 0), shards: shards.length };
  if (cacheMatches(dir, stamp, shards)) return { ...info, reused: true };

  // Written next to the cache and renamed into place, so an interrupted run never leaves a half model.
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(stamp.config, null, 2)}\n`);
    const fill = filler(stamp.seed, o.dtype);
    let done = 0;
    for (const shard of shards) {
      writeSafetensorsStreaming(join(tmp, shard.file), o.dtype, shard.tensors, (t, out, start) => {
        fill(t as TensorPlan, out, start);
        if (start === 0) o.onProgress?.(++done, tensors.length, t.name);
      });
    }
    if (shards.length > 1) writeFileSync(join(tmp, 'model.safetensors.index.json'), `${JSON.stringify(indexJson(shards, info.weightBytes), null, 2)}\n`);
    writeFileSync(join(tmp, STAMP), `${JSON.stringify(stamp, null, 2)}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { ...info, reused: false };
}

interface Shard {
  file: string;
  tensors: TensorPlan[];
  bytes: number;
}

/** Tensors in order, packed greedily into shards of at most maxBytes (a larger tensor gets its own). */
function planShards(tensors: readonly TensorPlan[], dtype: FloatDType, maxBytes: number): Shard[] {
  const groups: { tensors: TensorPlan[]; bytes: number }[] = [];
  for (const t of tensors) {
    const bytes = tensorBytes(t, dtype);
    const last = groups.at(-1);
    if (last && last.bytes + bytes <= maxBytes) {
      last.tensors.push(t);
      last.bytes += bytes;
    } else groups.push({ tensors: [t], bytes });
  }
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  return groups.map((g, i) => ({ ...g, file: n === 1 ? 'model.safetensors' : `model-${pad(i + 1)}-of-${pad(n)}.safetensors` }));
}

function indexJson(shards: readonly Shard[], totalSize: number) {
  return { metadata: { total_size: totalSize }, weight_map: Object.fromEntries(shards.flatMap((s) => s.tensors.map((t) => [t.name, s.file]))) };
}

/** The stamp equals what we would write and every shard has the size its tensors need. */
function cacheMatches(dir: string, stamp: object, shards: readonly Shard[]): boolean {
  try {
    if (readFileSync(join(dir, STAMP), 'utf8') !== `${JSON.stringify(stamp, null, 2)}\n`) return false;
    const config = (stamp as { config: unknown }).config;
    if (JSON.stringify(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))) !== JSON.stringify(config)) return false;
    return shards.every((s) => existsSync(join(dir, s.file)) && statSync(join(dir, s.file)).size >= s.bytes);
  } catch {
    return false;
  }
}

// Irwin–Hall of 4 uniform bytes: sums 0..1020, mean 510, std √(4·(256²−1)/12).
const IH_LEVELS = 1021;
const IH_MEAN = 510;
const IH_STD = Math.sqrt((4 * (256 * 256 - 1)) / 12);

/** A filler writing seeded values; each chunk's stream depends on (seed, tensor, start) only. */
function filler(seed: number, dtype: FloatDType): (t: TensorPlan, out: Float32Array | Uint16Array, start: number) => void {
  const tables = new Map<number, Float32Array | Uint16Array>();
  const encode = (x: number) => (dtype === 'bf16' ? f32ToBf16(x) : dtype === 'f16' ? f32ToF16(x) : x);
  const table = (init: TensorInit): Float32Array | Uint16Array => {
    const std = init.kind === 'normal' ? init.std : 0;
    let t = tables.get(std);
    if (!t) {
      t = dtype === 'f32' ? new Float32Array(IH_LEVELS) : new Uint16Array(IH_LEVELS);
      for (let s = 0; s < IH_LEVELS; s++) t[s] = encode(init.kind === 'ones' ? 1 : ((s - IH_MEAN) / IH_STD) * std);
      tables.set(std, t);
    }
    return t;
  };
  return (t, out, start) => {
    const lut = table(t.init);
    let x = hash32(`${seed}:${t.name}:${start}`) || 1;
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = lut[(x & 255) + ((x >>> 8) & 255) + ((x >>> 16) & 255) + (x >>> 24)];
    }
  };
}

/** FNV-1a, then murmur3's finalizer so that nearby strings give unrelated states. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
