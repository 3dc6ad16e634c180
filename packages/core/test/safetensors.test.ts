import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromF32 } from '../src/dtype.js';
import { ModelFormatError, SafetensorsError, type ErrorDetails } from '../src/errors.js';
import { parseSafetensorsHeader, SafetensorsFile } from '../src/safetensors.js';
import { encodeSafetensors, frameSafetensors, writeSafetensors } from '../src/safetensors-writer.js';
import { hostTensor, type HostTensor } from '../src/tensor.js';
import { openWeightFiles } from '../src/weight-files.js';

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'zinfer-safetensors-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpPath = (name = 'x.safetensors') => join(tmp, `${counter++}-${name}`);
const enc = new TextEncoder();

function f32(shape: number[], values: number[]): HostTensor {
  return hostTensor('f32', shape, Float32Array.from(values));
}

/** A file with a hand-written header (padded like the writer) and `dataLength` zero bytes of data. */
function rawFile(header: unknown, dataLength = 0): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const path = tmpPath();
  fs.writeFileSync(path, frameSafetensors(enc.encode(text), new Uint8Array(dataLength)));
  return path;
}

function parse(header: unknown, dataLength = 64) {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  return parseSafetensorsHeader(enc.encode(text), dataLength, 'm.safetensors');
}

/** Asserts `fn` throws `cls` with these details and a message containing each of `inMessage`. */
function throwsTyped(fn: () => unknown, cls: typeof SafetensorsError | typeof ModelFormatError, details: ErrorDetails, ...inMessage: string[]) {
  let thrown: unknown = 'nothing';
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  assert.instance(thrown, cls, `expected ${cls.name}, got ${String(thrown)}`);
  const err = thrown as SafetensorsError | ModelFormatError;
  for (const [k, v] of Object.entries(details)) assert.is(err.info[k as keyof ErrorDetails], v, `details.${k} in: ${err.message}`);
  for (const s of inMessage) assert.ok(err.message.includes(s), `"${s}" not in: ${err.message}`);
  return err;
}

const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });

// ---- round trips ----

test('round trip f32, f16 and bf16 with metadata', () => {
  const values = [1, -2.5, 0.1, 65504, -0, 3e-5];
  const tensors = {
    a: f32([2, 3], values),
    h: hostTensor('f16', [3, 2], fromF32('f16', Float32Array.from(values))),
    b: hostTensor('bf16', [6], fromF32('bf16', Float32Array.from(values))),
  };
  const path = tmpPath();
  writeSafetensors(path, tensors, { format: 'pt', note: 'ünïcode' });
  const headerLength = Number(fs.readFileSync(path).readBigUInt64LE(0));
  assert.is(headerLength % 8, 0, 'header padded to 8 bytes');
  const file = SafetensorsFile.open(path);
  assert.equal(file.metadata, { format: 'pt', note: 'ünïcode' });
  assert.equal([...file.entries.keys()], ['a', 'h', 'b']);
  assert.equal([file.entries.get('a')!.begin, file.entries.get('h')!.begin, file.entries.get('b')!.begin], [0, 24, 36]);
  for (const [name, t] of Object.entries(tensors)) {
    const got = file.read(name);
    assert.is(got.dtype, t.dtype);
    assert.equal(got.shape, t.shape);
    assert.is(got.data.constructor, t.data.constructor);
    assert.equal(Array.from(got.data), Array.from(t.data));
    assert.is(got.data.byteOffset, 0, 'fresh, aligned storage');
  }
  file.close();
});

test('0-d and empty tensors round trip', () => {
  const path = tmpPath();
  writeSafetensors(path, {
    scalar: f32([], [3.5]),
    empty: hostTensor('f16', [0, 4]),
    empty2: hostTensor('bf16', [2, 0]),
    after: f32([1], [7]),
  });
  const file = SafetensorsFile.open(path);
  assert.equal(file.read('scalar').shape, []);
  assert.equal(Array.from(file.read('scalar').data), [3.5]);
  assert.is(file.read('empty').data.length, 0);
  assert.equal(file.read('empty2').shape, [2, 0]);
  assert.equal(Array.from(file.read('after').data), [7]);
  assert.equal(file.metadata, {});
  file.close();
});

test('encodeSafetensors rejects storage that does not match dtype or shape', () => {
  throwsTyped(() => encodeSafetensors({ w: hostTensor('f32', [2]), bad: { dtype: 'f16', shape: [2], data: new Float32Array(2) } }), SafetensorsError, { tensor: 'bad' });
  throwsTyped(() => encodeSafetensors({ w: { dtype: 'f32', shape: [3], data: new Float32Array(2) } }), SafetensorsError, { tensor: 'w' });
  throwsTyped(() => encodeSafetensors({ __metadata__: hostTensor('f32', [1]) }), SafetensorsError, { tensor: '__metadata__' });
});

// ---- header validation ----

test('valid headers: gaps, trailing bytes and adjacent empty ranges are fine', () => {
  const h = parse({ a: entry('F32', [2], [8, 16]), e: entry('F16', [0], [8, 8]), b: entry('BF16', [2, 2], [20, 28]) }, 40);
  assert.equal([...h.entries.values()].map((e) => [e.name, e.dtype, e.begin, e.end]), [['a', 'f32', 8, 16], ['e', 'f16', 8, 8], ['b', 'bf16', 20, 28]]);
});

test('header that is not UTF-8 JSON object', () => {
  const bytes = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]);
  throwsTyped(() => parseSafetensorsHeader(bytes, 0, 'm.safetensors'), SafetensorsError, { file: 'm.safetensors', found: 'invalid UTF-8 bytes' }, 'UTF-8');
  throwsTyped(() => parse('{"a": '), SafetensorsError, { file: 'm.safetensors', field: 'header' }, 'not valid JSON');
  throwsTyped(() => parse('\ufeff{}'), SafetensorsError, { field: 'header' }, 'not valid JSON');
  throwsTyped(() => parse([1, 2]), SafetensorsError, { expected: 'a JSON object', found: '[1, 2]' });
  throwsTyped(() => parse('null'), SafetensorsError, { found: 'null' });
  throwsTyped(() => parse('7'), SafetensorsError, { found: '7' });
});

test('__metadata__ must map strings to strings', () => {
  throwsTyped(() => parse({ __metadata__: { format: 1 } }), SafetensorsError, { field: '__metadata__', found: 'format: 1' });
  throwsTyped(() => parse({ __metadata__: ['pt'] }), SafetensorsError, { field: '__metadata__' });
  throwsTyped(() => parse({ __metadata__: 'pt' }), SafetensorsError, { field: '__metadata__', found: '"pt"' });
  assert.equal(parse('{"__metadata__": {"__proto__": "x"}}').metadata, Object.fromEntries([['__proto__', 'x']]));
});

test('entry not an object or missing a field', () => {
  throwsTyped(() => parse({ w: 5 }), SafetensorsError, { file: 'm.safetensors', tensor: 'w', found: '5' }, 'not an object');
  throwsTyped(() => parse({ w: [] }), SafetensorsError, { tensor: 'w' });
  for (const field of ['dtype', 'shape', 'data_offsets']) {
    const e: Record<string, unknown> = entry('F32', [1], [0, 4]);
    delete e[field];
    throwsTyped(() => parse({ w: e }), SafetensorsError, { tensor: 'w', field, found: 'none' }, field);
  }
});

test('unsupported dtypes are named and the supported ones listed', () => {
  for (const dtype of ['F64', 'I64', 'U8', 'f32', '__proto__', 'toString']) {
    throwsTyped(() => parse({ w: entry(dtype, [1], [0, 8]) }), SafetensorsError,
      { tensor: 'w', field: 'dtype', found: dtype, expected: 'one of F32, F16, BF16' }, dtype);
  }
  throwsTyped(() => parse({ w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }), SafetensorsError, { field: 'dtype', found: '4' });
});

test('shape must be an array of non-negative safe integers with a safe product', () => {
  for (const shape of [[-1], [1.5], ['2'], [2 ** 60], [[2]], [null], 3, 'x', null]) {
    throwsTyped(() => parse({ w: entry('F32', shape, [0, 4]) }), SafetensorsError, { tensor: 'w', field: 'shape' });
  }
  throwsTyped(() => parse({ w: entry('F32', [2 ** 26, 2 ** 26, 2 ** 26], [0, 4]) }), SafetensorsError,
    { tensor: 'w', field: 'shape', expected: 'a byte size below 2^53' }, 'too large');
  // A zero dimension makes huge ones harmless.
  assert.is(parse({ w: entry('F32', [2 ** 52, 2 ** 52, 0], [0, 0]) }).entries.get('w')!.end, 0);
});

test('data_offsets must be two ordered safe integers', () => {
  for (const offsets of [[0], [0, 4, 8], [5, 1], [-4, 0], [0, 1e300], [0, 2 ** 60], [0.5, 4.5], ['0', '4'], null, { 0: 0, 1: 4 }]) {
    throwsTyped(() => parse({ w: entry('F32', [1], offsets) }), SafetensorsError, { tensor: 'w', field: 'data_offsets' });
  }
  throwsTyped(() => parse({ w: entry('F32', [1], [5, 1]) }), SafetensorsError, { found: '[5, 1]' });
});

test('offsets beyond the data say the file is truncated', () => {
  throwsTyped(() => parse({ w: entry('F32', [4], [0, 16]) }, 8), SafetensorsError,
    { file: 'm.safetensors', tensor: 'w', expected: 'data length >= 16', found: '8' }, 'truncated');
});

test('byte length must equal numel * element size', () => {
  throwsTyped(() => parse({ w: entry('F16', [2, 3], [0, 24]) }), SafetensorsError,
    { tensor: 'w', field: 'data_offsets', expected: '12 bytes (F16 [2, 3])', found: '24 bytes' });
  throwsTyped(() => parse({ w: entry('F32', [], [0, 0]) }), SafetensorsError, { expected: '4 bytes (F32 [])' });
});

test('overlapping tensors are both named', () => {
  const err = throwsTyped(() => parse({ a: entry('F32', [4], [0, 16]), b: entry('F32', [2], [12, 20]) }), SafetensorsError,
    { tensor: 'b', field: 'data_offsets', found: '[12, 20]' }, 'a and b overlap');
  assert.ok(err.info.expected!.includes('a [0, 16]'));
  // Containment is caught even when a smaller range sits between.
  throwsTyped(() => parse({ big: entry('F32', [8], [0, 32]), s: entry('F32', [1], [4, 8]), t: entry('F32', [1], [24, 28]) }),
    SafetensorsError, {}, 'big and s overlap');
  throwsTyped(() => parse({ a: entry('F32', [2], [8, 16]), b: entry('F32', [2], [8, 16]) }), SafetensorsError, {}, 'overlap');
});

// ---- opening files ----

test('open: missing file, directory, short file', () => {
  const missing = join(tmp, 'nope.safetensors');
  throwsTyped(() => SafetensorsFile.open(missing), ModelFormatError, { file: missing, found: 'file not found' }, missing);
  throwsTyped(() => SafetensorsFile.open(tmp), ModelFormatError, { file: tmp, found: 'not a file' });
  const short = tmpPath();
  fs.writeFileSync(short, new Uint8Array(5));
  throwsTyped(() => SafetensorsFile.open(short), SafetensorsError, { file: short, expected: 'at least 8 bytes', found: '5 bytes' });
});

test('open: header length beyond the file or over the cap', () => {
  const path = tmpPath();
  const bytes = new Uint8Array(40);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 33n, true);
  fs.writeFileSync(path, bytes);
  throwsTyped(() => SafetensorsFile.open(path), SafetensorsError, { file: path, found: '33 bytes', expected: '<= 32 bytes (file size - 8)' }, 'beyond the file');
  for (const n of [200n * 1024n * 1024n, 2n ** 64n - 1n]) {
    view.setBigUint64(0, n, true);
    fs.writeFileSync(path, bytes);
    throwsTyped(() => SafetensorsFile.open(path), SafetensorsError, { file: path, field: 'header length', found: `${n} bytes` }, 'over the cap');
  }
});

test('open: header errors name the file', () => {
  const path = rawFile({ w: entry('F32', [4], [0, 16]) }, 8);
  throwsTyped(() => SafetensorsFile.open(path), SafetensorsError, { file: path, tensor: 'w', found: '8' }, path, 'truncated');
});

test('read: unknown tensor, read after close, idempotent close', () => {
  const path = tmpPath();
  writeSafetensors(path, { w: f32([1], [1]) });
  const file = SafetensorsFile.open(path);
  throwsTyped(() => file.read('nope'), SafetensorsError, { file: path, tensor: 'nope' }, 'no such tensor');
  file.close();
  file.close();
  throwsTyped(() => file.read('w'), SafetensorsError, { file: path, tensor: 'w', found: 'closed' });
});

test('open reads only the header; read reads only its tensor', () => {
  const path = tmpPath();
  const big = hostTensor('f32', [4096]);
  writeSafetensors(path, { small: f32([3], [1, 2, 3]), big });
  const headerLength = Number(fs.readFileSync(path).readBigUInt64LE(0));
  const original = fs.readSync;
  const reads: number[] = [];
  // Short reads of at most 5 bytes also exercise the loop that fills a buffer across several calls.
  Reflect.set(fs, 'readSync', (fd: number, buf: Uint8Array, off: number, len: number, pos: number) => {
    const got = original(fd, buf, off, Math.min(len, 5), pos);
    reads.push(got);
    return got;
  });
  try {
    const file = SafetensorsFile.open(path);
    assert.is(reads.reduce((a, b) => a + b, 0), 8 + headerLength);
    reads.length = 0;
    assert.equal(Array.from(file.read('small').data), [1, 2, 3]);
    assert.is(reads.reduce((a, b) => a + b, 0), 12);
    file.close();
  } finally {
    Reflect.set(fs, 'readSync', original);
  }
});

test('read works after the other tensors are cut off the file, and a cut tensor fails typed', () => {
  const path = tmpPath();
  writeSafetensors(path, { first: f32([2], [5, 6]), rest: hostTensor('f32', [1000]) });
  const file = SafetensorsFile.open(path);
  const dataStart = 8 + Number(fs.readFileSync(path).readBigUInt64LE(0));
  fs.truncateSync(path, dataStart + 8);
  assert.equal(Array.from(file.read('first').data), [5, 6]);
  throwsTyped(() => file.read('rest'), SafetensorsError, { file: path, tensor: 'rest', found: '0 bytes' }, 'ended early');
  file.close();
});

// ---- model directories ----

function modelDir(): string {
  const dir = join(tmp, `model-${counter++}`);
  fs.mkdirSync(dir);
  return dir;
}

function writeIndex(dir: string, weightMap: unknown) {
  fs.writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
}

test('single-file model directory', () => {
  const dir = modelDir();
  writeSafetensors(join(dir, 'model.safetensors'), { 'lm_head.weight': f32([2], [1, 2]), 'embed.weight': f32([1, 1], [3]) });
  const w = openWeightFiles(dir);
  assert.equal(w.names(), ['lm_head.weight', 'embed.weight']);
  assert.ok(w.has('embed.weight'));
  assert.not.ok(w.has('nope'));
  assert.equal(w.info('embed.weight'), { dtype: 'f32', shape: [1, 1], file: join(dir, 'model.safetensors') });
  assert.equal(Array.from(w.read('lm_head.weight').data), [1, 2]);
  throwsTyped(() => w.read('nope'), ModelFormatError, { tensor: 'nope', found: 'missing tensor' }, 'missing tensor');
  throwsTyped(() => w.info('nope'), ModelFormatError, { tensor: 'nope', found: 'missing tensor' });
  w.close();
  w.close();
  throwsTyped(() => w.read('lm_head.weight'), ModelFormatError, { found: 'closed' });
});

test('sharded model directory opens shards lazily', () => {
  const dir = modelDir();
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: f32([2], [1, 2]), b: hostTensor('bf16', [], Uint16Array.of(0x3f80)) });
  fs.writeFileSync(join(dir, 'model-00002-of-00002.safetensors'), 'not a safetensors file at all');
  writeIndex(dir, { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' });
  const w = openWeightFiles(dir);
  assert.equal(w.names(), ['a', 'b', 'c']);
  assert.ok(w.has('c'));
  assert.equal(w.info('b'), { dtype: 'bf16', shape: [], file: join(dir, 'model-00001-of-00002.safetensors') });
  assert.equal(Array.from(w.read('a').data), [1, 2]);
  assert.equal(Array.from(w.read('b').data), [0x3f80]);
  // The broken shard only matters once one of its tensors is asked for.
  throwsTyped(() => w.read('c'), SafetensorsError, { file: join(dir, 'model-00002-of-00002.safetensors') });
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { c: hostTensor('f16', [0]) });
  assert.equal(w.read('c').shape, [0]);
  w.close();
});

test('directory with neither layout', () => {
  const dir = modelDir();
  writeSafetensors(join(dir, 'pytorch_model-1.safetensors'), { a: f32([1], [1]) });
  throwsTyped(() => openWeightFiles(dir), ModelFormatError, { file: dir, expected: 'model.safetensors.index.json or model.safetensors' });
});

test('index: missing shard, tensor absent from its shard, malformed weight_map', () => {
  const dir = modelDir();
  const index = join(dir, 'model.safetensors.index.json');
  writeSafetensors(join(dir, 's1.safetensors'), { a: f32([1], [1]) });
  writeIndex(dir, { a: 's1.safetensors', b: 's2.safetensors' });
  throwsTyped(() => openWeightFiles(dir), ModelFormatError, { file: join(dir, 's2.safetensors'), found: 'file not found' }, index);

  writeIndex(dir, { a: 's1.safetensors', ghost: 's1.safetensors' });
  const w = openWeightFiles(dir);
  throwsTyped(() => w.read('a'), ModelFormatError, { file: join(dir, 's1.safetensors'), tensor: 'ghost', found: 'missing tensor' }, index, 'absent');
  w.close();

  for (const weightMap of [null, ['s1.safetensors'], 'x']) {
    writeIndex(dir, weightMap);
    throwsTyped(() => openWeightFiles(dir), ModelFormatError, { file: index, field: 'weight_map' });
  }
  for (const shard of [3, '', '../s1.safetensors', '/etc/passwd']) {
    writeIndex(dir, { a: shard });
    throwsTyped(() => openWeightFiles(dir), ModelFormatError, { file: index, tensor: 'a', field: 'weight_map' });
  }
  fs.writeFileSync(index, '{"weight_map": ');
  throwsTyped(() => openWeightFiles(dir), ModelFormatError, { file: index }, 'not valid JSON');
});

test.run();
