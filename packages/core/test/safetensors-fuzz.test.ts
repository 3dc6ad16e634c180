// Deterministic fuzzing of the safetensors header parser and of SafetensorsFile.open. Every input must
// either parse into entries that satisfy the format's invariants or fail with one of our typed errors;
// a TypeError, RangeError or a hang is a bug. Seeded, so a failure names a case that can be replayed.

import fs from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ModelFormatError, SafetensorsError } from '../src/errors.js';
import { ELEMENT_BYTES, parseSafetensorsHeader, SafetensorsFile, type SafetensorsHeader } from '../src/safetensors.js';

const CASES = 1500;
const MAX_CASE_MS = 200;

/** mulberry32: tiny, fast, good enough to drive mutations. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)], chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

const NASTY_NUMBERS = [1e300, -1e300, 2 ** 60, 2 ** 53, 2 ** 53 - 1, 2 ** 32, 2 ** 31, -1, -0, 0, 1, 1.5, 0.1, -(2 ** 60), 7];
const NASTY_DTYPES = ['F64', 'I64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'f32', 'bf16', '', '__proto__', 'toString', 'F32 ', 'F１6'];
const NAMES = ['w', 'model.layers.0.self_attn.q_proj.weight', '', '__proto__', 'constructor', '__metadata__', '0', '12', 'ñ', '权重', '🙂', '\u0000', 'a"b', '\ud800'];

// Deep arrays go in as a marker replaced in the JSON text: JSON.stringify recurses and would overflow
// the stack long before JSON.parse (which does not) has any trouble.
const deepArray = (depth: number) => `@@deep${depth}@@`;
const encodeHeader = (header: unknown) =>
  new TextEncoder().encode(JSON.stringify(header).replace(/"@@deep(\d+)@@"/g, (_, d) => '['.repeat(+d) + '1' + ']'.repeat(+d)));

function junk(r: Rng): unknown {
  return r.pick<() => unknown>([
    () => deepArray(r.int(50_000)),
    () => ({ a: { b: { c: [1, { d: null }] } } }),
    () => ({}),
    () => [],
    () => null,
    () => true,
    () => '🙂 ünï \u2028 \ud800',
    () => r.pick(NASTY_NUMBERS),
    () => Array.from({ length: r.int(2000) }, () => r.int(3)),
  ])();
}

/** A valid header: a few tensors with consistent offsets, sometimes gaps, sometimes metadata. */
function validHeader(r: Rng): { header: Record<string, unknown>; dataLength: number } {
  const header: Record<string, unknown> = {};
  if (r.chance(0.3)) header.__metadata__ = { format: 'pt', note: r.pick(['', 'ünïcode', '🙂']) };
  let offset = r.chance(0.2) ? r.int(16) : 0;
  for (let i = r.int(6); i > 0; i--) {
    const dtype = r.pick(['F32', 'F16', 'BF16'] as const);
    const shape = Array.from({ length: r.int(4) }, () => r.int(5));
    const bytes = shape.reduce((a, b) => a * b, 1) * { F32: 4, F16: 2, BF16: 2 }[dtype];
    header[`t${i}.${r.pick(NAMES)}`] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes + (r.chance(0.2) ? r.int(8) : 0);
  }
  return { header, dataLength: offset + (r.chance(0.2) ? r.int(32) : 0) };
}

/** Changes one thing in the header object, aiming at the checks the parser must make. */
function mutateObject(r: Rng, header: Record<string, unknown>): void {
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  // An earlier mutation may have left junk where an entry was; put an object back to mutate further.
  const entryAt = (k: string): Record<string, unknown> => {
    const v = header[k];
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    return (header[k] = {}) as Record<string, unknown>;
  };
  const name = names.length ? r.pick(names) : 'x';
  const e = entryAt(name);
  const other = names.length ? entryAt(r.pick(names)) : e;
  const offsets = Array.isArray(e.data_offsets) ? e.data_offsets : [0, 0];
  const shape = Array.isArray(e.shape) ? e.shape : [];
  r.pick<() => void>([
    () => (e.data_offsets = [offsets[1], offsets[0]]),
    () => ([e.data_offsets, other.data_offsets] = [other.data_offsets, e.data_offsets]),
    () => (offsets[r.int(2)] = r.pick(NASTY_NUMBERS)),
    () => (e.data_offsets = r.pick([[offsets[0]], [...offsets, 4], [], '0,4', { begin: 0, end: 4 }])),
    () => (shape.length ? (shape[r.int(shape.length)] = r.pick(NASTY_NUMBERS)) : shape.push(r.pick(NASTY_NUMBERS))),
    () => (e.shape = [...shape, ...Array.from({ length: 1 + r.int(40) }, () => r.pick([2 ** 20, 1, 0, 3]))]),
    () => (e.dtype = r.pick(NASTY_DTYPES)),
    () => (e[r.pick(['dtype', 'shape', 'data_offsets', 'extra'])] = junk(r)),
    () => delete e[r.pick(['dtype', 'shape', 'data_offsets'])],
    () => (header[name] = junk(r)),
    () => (header.__metadata__ = r.pick([{ k: 1 }, { k: null }, ['a'], 'meta', { '🙂': '\ud800' }, junk(r)])),
    () => (header[r.pick(NAMES)] = { ...e }), // duplicate ranges under another name
    () => (other.data_offsets = [offsets[0] + r.int(3), offsets[1] + r.int(3)]),
  ])();
}

/** Byte-level damage to the encoded header. */
function mutateBytes(r: Rng, bytes: Uint8Array): Uint8Array {
  const b = Array.from(bytes);
  const at = () => r.int(b.length + 1);
  for (let i = 1 + r.int(4); i > 0; i--) {
    r.pick<() => void>([
      () => b.length && (b[at() % b.length] ^= 1 << r.int(8)),
      () => b.length && (b[at() % b.length] = r.int(256)),
      () => b.splice(at(), 0, r.int(256)),
      () => b.splice(at(), 0, ...r.pick([[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xef, 0xbb, 0xbf], [0xff], [0xf0, 0x9f, 0x99, 0x82]])),
      () => b.splice(at(), 0, ...Array.from(new TextEncoder().encode(r.pick(['{', '}', '[', ']', ',', ':', '"', '1e300', '-', 'null', '\\u0000', '\\ud800'])))),
      () => b.splice(at(), 1 + r.int(4)),
      () => (b.length = at()),
    ])();
  }
  return Uint8Array.from(b);
}

function randomBytes(r: Rng): Uint8Array {
  if (r.chance(0.5)) return Uint8Array.from({ length: r.int(64) }, () => r.int(256));
  const tokens = ['{', '}', '[', ']', ',', ':', '"F32"', '"dtype"', '"shape"', '"data_offsets"', '"w"', '0', '4', '-1', '1e300', 'null', ' '];
  return new TextEncoder().encode(Array.from({ length: r.int(40) }, () => r.pick(tokens)).join(''));
}

/** One generated case: header bytes plus the data length that follows them. */
function generate(r: Rng): { json: Uint8Array; dataLength: number; kind: string } {
  if (r.chance(0.15)) return { json: randomBytes(r), dataLength: r.int(64), kind: 'random' };
  const { header, dataLength } = validHeader(r);
  // Some untouched headers keep the success path (invariants, reads) well covered.
  if (r.chance(0.2)) return { json: encodeHeader(header), dataLength, kind: 'valid' };
  const structured = r.chance(0.7);
  if (structured) for (let i = 1 + r.int(2); i > 0; i--) mutateObject(r, header);
  let json: Uint8Array = encodeHeader(header);
  const bytewise = !structured || r.chance(0.3);
  if (bytewise) json = mutateBytes(r, json);
  const dl = r.pick([dataLength, dataLength, dataLength, Math.max(0, dataLength - 1 - r.int(8)), 0, dataLength + r.int(8)]);
  return { json, dataLength: dl, kind: structured ? (bytewise ? 'both' : 'structured') : 'bytes' };
}

function checkInvariants({ entries, metadata }: SafetensorsHeader, dataLength: number): void {
  for (const v of Object.values(metadata)) assert.type(v, 'string');
  for (const [key, e] of entries) {
    assert.is(e.name, key);
    assert.ok(e.dtype === 'f32' || e.dtype === 'f16' || e.dtype === 'bf16', `dtype ${e.dtype}`);
    assert.ok(Array.isArray(e.shape) && e.shape.every((d) => Number.isSafeInteger(d) && d >= 0), 'shape');
    assert.ok(Number.isSafeInteger(e.begin) && Number.isSafeInteger(e.end), 'offsets are safe integers');
    assert.ok(e.begin >= 0 && e.begin <= e.end && e.end <= dataLength, `offsets in range: ${e.begin}..${e.end} of ${dataLength}`);
    assert.is(e.end - e.begin, e.shape.reduce((a, b) => a * b, 1) * ELEMENT_BYTES[e.dtype], 'size consistent');
  }
  const ranges = [...entries.values()].filter((e) => e.end > e.begin);
  for (const a of ranges) for (const b of ranges) if (a !== b) assert.ok(a.end <= b.begin || b.end <= a.begin, `${a.name} and ${b.name} overlap`);
}

/** Runs `fn`; only success or our typed errors are allowed, and each case must be quick. */
function expectTypedOutcome<T>(label: string, fn: () => T): T | undefined {
  const start = performance.now();
  try {
    return fn();
  } catch (e) {
    if (e instanceof SafetensorsError || e instanceof ModelFormatError) return undefined;
    throw new Error(`${label}: untyped failure ${String(e)}`);
  } finally {
    const ms = performance.now() - start;
    assert.ok(ms < MAX_CASE_MS, `${label} took ${ms.toFixed(1)} ms`);
  }
}

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'zinfer-st-fuzz-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test(`parseSafetensorsHeader survives ${CASES} generated headers`, () => {
  const r = prng(0x5eed);
  const outcomes = { ok: 0, rejected: 0 };
  for (let i = 0; i < CASES; i++) {
    const { json, dataLength, kind } = generate(r);
    const parsed = expectTypedOutcome(`parse case ${i} (${kind})`, () => parseSafetensorsHeader(json, dataLength, 'fuzz.safetensors'));
    if (parsed) checkInvariants(parsed, dataLength);
    outcomes[parsed ? 'ok' : 'rejected']++;
  }
  // Guard against a generator that only ever produces garbage (or never does).
  assert.ok(outcomes.ok > CASES / 10, `only ${outcomes.ok} accepted`);
  assert.ok(outcomes.rejected > CASES / 2, `only ${outcomes.rejected} rejected`);
  if (process.env.FUZZ_STATS) console.log('parse', outcomes);
});

test(`SafetensorsFile.open survives ${CASES} generated files, some lying about the header length`, () => {
  const r = prng(0xf11e);
  const path = join(tmp, 'case.safetensors');
  const outcomes = { ok: 0, rejected: 0 };
  for (let i = 0; i < CASES; i++) {
    const { json, dataLength, kind } = generate(r);
    const bytes = new Uint8Array(8 + json.length + dataLength);
    bytes.set(json, 8);
    for (let j = 8 + json.length; j < bytes.length; j++) bytes[j] = r.int(256);
    const trueLength = BigInt(json.length);
    const lie = r.chance(0.6) ? trueLength : r.pick([trueLength - 1n, trueLength + 1n + BigInt(r.int(64)), 0n,
      100n * 1024n * 1024n + 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(bytes.length - 8), BigInt(r.int(bytes.length))]);
    new DataView(bytes.buffer).setBigUint64(0, lie < 0n ? 0n : lie, true);
    fs.writeFileSync(path, r.chance(0.03) ? bytes.subarray(0, r.int(8)) : bytes);

    const label = `file case ${i} (${kind})`;
    const file = expectTypedOutcome(label, () => SafetensorsFile.open(path));
    if (!file) {
      outcomes.rejected++;
      continue;
    }
    outcomes.ok++;
    const dataStart = 8 + Number(lie);
    checkInvariants(file, fs.statSync(path).size - dataStart);
    for (const [name, e] of file.entries) {
      const t = expectTypedOutcome(`${label} read ${name}`, () => file.read(name));
      assert.ok(t, `${label}: read ${name} of a validated file failed`);
      assert.is(t.data.byteLength, e.end - e.begin);
      assert.equal(new Uint8Array(t.data.buffer), bytes.subarray(dataStart + e.begin, dataStart + e.end), `${label} read ${name} bytes`);
    }
    file.close();
  }
  assert.ok(outcomes.ok > CASES / 10, `only ${outcomes.ok} accepted`);
  assert.ok(outcomes.rejected > CASES / 2, `only ${outcomes.rejected} rejected`);
  if (process.env.FUZZ_STATS) console.log('open', outcomes);
});

test.run();
