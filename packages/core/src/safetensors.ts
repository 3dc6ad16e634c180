// Lazy, strictly validating reader for Hugging Face safetensors files.
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data area. Each header
// entry is {dtype, shape, data_offsets: [begin, end]} with offsets relative to the data area.
// The header is untrusted input: every number in it is checked against the real data length before
// anything is allocated from it, so a hostile or truncated file fails with a typed error, never an OOM.

import fs from 'node:fs';
import { allocFloat, type FloatDType, type FloatStorage } from './dtype.js';
import { ModelFormatError, SafetensorsError } from './errors.js';
import { hostTensor, shapeString, type HostTensor } from './tensor.js';

export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: FloatDType;
  readonly shape: number[];
  /** Byte offsets into the data area (which starts at 8 + header length). */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

/** Our dtype names as safetensors spells them. */
export const SAFETENSORS_DTYPE: Record<FloatDType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
export const ELEMENT_BYTES: Record<FloatDType, number> = { f32: 4, f16: 2, bf16: 2 };

// A Map, not an object: a header dtype like "__proto__" or "toString" must not hit Object.prototype.
const FROM_SAFETENSORS = new Map<string, FloatDType>([['F32', 'f32'], ['F16', 'f16'], ['BF16', 'bf16']]);
const SUPPORTED = [...FROM_SAFETENSORS.keys()].join(', ');

/** Real headers are a few MiB at most; anything larger is corrupt or hostile. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** readSync takes at most ~2 GiB per call; 1 GiB keeps well clear of that. */
const READ_CHUNK_BYTES = 1024 * 1024 * 1024;

/** Parses and validates a header against the size of the data area that follows it. */
export function parseSafetensorsHeader(json: Uint8Array, dataLength: number, file: string): SafetensorsHeader {
  const root = decodeHeader(json, file);
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(root)) {
    if (name === '__metadata__') metadata = parseMetadata(value, file);
    else entries.set(name, parseEntry(name, value, dataLength, file));
  }
  checkOverlaps(entries, file);
  return { entries, metadata };
}

function decodeHeader(bytes: Uint8Array, file: string): Record<string, unknown> {
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text so JSON.parse rejects it, as the reference implementation does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new SafetensorsError('safetensors header is not valid UTF-8', {
      file, field: 'header', expected: 'UTF-8 JSON', found: 'invalid UTF-8 bytes',
    });
  }
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError('safetensors header is not valid JSON', {
      file, field: 'header', expected: 'a JSON object', found: clip(String((e as Error).message)),
    });
  }
  if (!isObject(root)) {
    throw new SafetensorsError('safetensors header is not a JSON object', {
      file, field: 'header', expected: 'a JSON object', found: describe(root),
    });
  }
  return root;
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  const bad = (found: string) =>
    new SafetensorsError('safetensors __metadata__ must map strings to strings', {
      file, field: '__metadata__', expected: 'an object of string values', found,
    });
  if (!isObject(value)) throw bad(describe(value));
  for (const [k, v] of Object.entries(value)) if (typeof v !== 'string') throw bad(`${clip(k)}: ${describe(v)}`);
  // fromEntries defines own properties, so a "__proto__" key stays a key instead of a prototype.
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function parseEntry(name: string, value: unknown, dataLength: number, file: string): SafetensorsEntry {
  const bad = (message: string, field: string | undefined, expected: string, found: string) =>
    new SafetensorsError(message, { file, tensor: name, field, expected, found });
  if (!isObject(value)) throw bad('safetensors entry is not an object', undefined, 'an object', describe(value));
  for (const field of ['dtype', 'shape', 'data_offsets']) {
    if (!Object.hasOwn(value, field)) throw bad(`safetensors entry has no ${field}`, field, `a ${field} field`, 'none');
  }

  const dtype = typeof value.dtype === 'string' ? FROM_SAFETENSORS.get(value.dtype) : undefined;
  if (dtype === undefined) {
    const found = typeof value.dtype === 'string' ? clip(value.dtype) : describe(value.dtype);
    throw bad(`unsupported safetensors dtype ${found}`, 'dtype', `one of ${SUPPORTED}`, found);
  }

  const shape = parseShape(value.shape, (found) =>
    bad('safetensors shape is not a list of non-negative integers', 'shape', 'an array of non-negative safe integers', found));
  const numel = safeNumel(shape);
  const bytes = numel === undefined ? NaN : numel * ELEMENT_BYTES[dtype];
  if (!Number.isSafeInteger(bytes)) {
    throw bad('safetensors shape is too large', 'shape', 'a byte size below 2^53', clipShape(shape));
  }

  const offsets = value.data_offsets;
  const [begin, end] = Array.isArray(offsets) && offsets.length === 2 ? offsets : [undefined, undefined];
  if (!isSize(begin) || !isSize(end) || begin > end) {
    throw bad('safetensors data_offsets must be [begin, end] with 0 <= begin <= end', 'data_offsets',
      'two non-negative safe integers, begin <= end', describe(offsets));
  }
  if (end > dataLength) {
    throw bad('safetensors file is truncated: tensor data runs past the end of the file', 'data_offsets',
      `data length >= ${end}`, `${dataLength}`);
  }
  if (end - begin !== bytes) {
    throw bad('safetensors data_offsets disagree with dtype and shape', 'data_offsets',
      `${bytes} bytes (${SAFETENSORS_DTYPE[dtype]} ${clipShape(shape)})`, `${end - begin} bytes`);
  }
  // `+ 0` turns a JSON -0 into 0 so offsets compare and print plainly.
  return { name, dtype, shape, begin: begin + 0, end: end + 0 };
}

function parseShape(value: unknown, bad: (found: string) => SafetensorsError): number[] {
  if (!Array.isArray(value)) throw bad(describe(value));
  for (const d of value) if (!isSize(d)) throw bad(`dimension ${describe(d)}`);
  return value.map((d: number) => d + 0);
}

/** Product of dims, or undefined once it stops being exact; a zero dim wins over huge ones. */
function safeNumel(shape: number[]): number | undefined {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

function checkOverlaps(entries: Map<string, SafetensorsEntry>, file: string): void {
  // Empty ranges hold no bytes, so they cannot overlap anything.
  const ranges = [...entries.values()].filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin || a.end - b.end);
  let reach: SafetensorsEntry | undefined; // the range seen so far that ends furthest
  for (const e of ranges) {
    if (reach && e.begin < reach.end) {
      throw new SafetensorsError(`safetensors tensors ${clip(reach.name)} and ${clip(e.name)} overlap`, {
        file, tensor: e.name, field: 'data_offsets',
        expected: `begin >= ${reach.end} (end of ${clip(reach.name)} [${reach.begin}, ${reach.end}])`,
        found: `[${e.begin}, ${e.end}]`,
      });
    }
    if (!reach || e.end > reach.end) reach = e;
  }
}

/** An open safetensors file: the header is parsed up front, tensor bytes are read only on demand. */
export class SafetensorsFile {
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
    /** Absolute file position of the data area. */
    private readonly dataStart: number,
    readonly entries: Map<string, SafetensorsEntry>,
    readonly metadata: Record<string, string>,
  ) {
    this.fd = fd;
  }

  /** Reads only the length prefix and the header; never the tensor data. */
  static open(path: string): SafetensorsFile {
    const fd = openRegularFile(path);
    try {
      const size = fs.fstatSync(fd).size;
      if (size < 8) {
        throw new SafetensorsError('safetensors file is too short to hold a header length', {
          file: path, expected: 'at least 8 bytes', found: `${size} bytes`,
        });
      }
      const prefix = new Uint8Array(8);
      readExactly(fd, prefix, 0, path);
      const n = new DataView(prefix.buffer).getBigUint64(0, true);
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw new SafetensorsError('safetensors header length is over the cap', {
          file: path, field: 'header length', expected: `<= ${MAX_HEADER_BYTES} bytes`, found: `${n} bytes`,
        });
      }
      if (n > BigInt(size - 8)) {
        throw new SafetensorsError('safetensors header length beyond the file', {
          file: path, field: 'header length', expected: `<= ${size - 8} bytes (file size - 8)`, found: `${n} bytes`,
        });
      }
      const headerBytes = new Uint8Array(Number(n));
      readExactly(fd, headerBytes, 8, path);
      const { entries, metadata } = parseSafetensorsHeader(headerBytes, size - 8 - headerBytes.length, path);
      return new SafetensorsFile(path, fd, 8 + headerBytes.length, entries, metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** One tensor's bytes, read into fresh (hence aligned) storage. Assumes a little-endian host. */
  read(name: string): HostTensor {
    const entry = this.entry(name);
    const n = (entry.end - entry.begin) / ELEMENT_BYTES[entry.dtype];
    return hostTensor(entry.dtype, entry.shape, this.readElements(entry, 0, n));
  }

  /**
   * Indices [start, start + length) along `axis` of a 1-D or 2-D tensor, reading only those bytes: one
   * contiguous read for rows, one read per row for a column range (a tensor-parallel shard).
   */
  readSlice(name: string, axis: number, start: number, length: number): HostTensor {
    const entry = this.entry(name);
    const [rows, cols = 1] = entry.shape;
    const extent = axis === 0 ? rows : cols;
    if (entry.shape.length > 2 || axis > entry.shape.length - 1 || start < 0 || length < 0 || start + length > extent) {
      throw new SafetensorsError('slice outside the tensor', { file: this.path, tensor: name, expected: `axis < ${entry.shape.length}, range within ${extent}`, found: `axis ${axis}, [${start}, ${start + length})` });
    }
    if (axis === 0) {
      const shape = entry.shape.length === 2 ? [length, cols] : [length];
      return hostTensor(entry.dtype, shape, this.readElements(entry, start * cols, length * cols));
    }
    const out = hostTensor(entry.dtype, [rows, length]);
    for (let r = 0; r < rows; r++) out.data.set(this.readElements(entry, r * cols + start, length), r * length);
    return out;
  }

  private entry(name: string): SafetensorsEntry {
    if (this.fd === null) {
      throw new SafetensorsError('safetensors file is closed', {
        file: this.path, tensor: name, expected: 'an open file', found: 'closed',
      });
    }
    const entry = this.entries.get(name);
    if (!entry) {
      throw new SafetensorsError('no such tensor in safetensors file', {
        file: this.path, tensor: name, expected: 'a tensor listed in the header', found: 'missing',
      });
    }
    return entry;
  }

  /** `n` elements from element `first` of a tensor, into fresh storage. */
  private readElements(entry: SafetensorsEntry, first: number, n: number): FloatStorage {
    let data: FloatStorage;
    try {
      data = allocFloat(entry.dtype, n);
    } catch {
      throw new SafetensorsError('safetensors tensor is too large to hold in memory', {
        file: this.path, tensor: entry.name, expected: 'a typed array this runtime can allocate', found: `${n} elements`,
      });
    }
    const at = this.dataStart + entry.begin + first * ELEMENT_BYTES[entry.dtype];
    readExactly(this.fd!, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at, this.path, entry.name);
    return data;
  }

  /** Safe to call more than once. */
  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    fs.closeSync(fd);
  }
}

function openRegularFile(path: string): number {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const found = code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(e)})`;
    throw new ModelFormatError('cannot open safetensors file', { file: path, expected: 'a readable safetensors file', found });
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new ModelFormatError('safetensors path is not a regular file', { file: path, expected: 'a regular file', found: 'not a file' });
  }
  return fd;
}

/** Fills `buf` from absolute `position`, in bounded chunks, tolerating short reads. */
function readExactly(fd: number, buf: Uint8Array, position: number, file: string, tensor?: string): void {
  let done = 0;
  while (done < buf.length) {
    const want = Math.min(READ_CHUNK_BYTES, buf.length - done);
    const got = fs.readSync(fd, buf, done, want, position + done);
    if (got === 0) {
      // The header was checked against the size at open, so the file must have shrunk since.
      throw new SafetensorsError('safetensors file ended early (was it truncated after opening?)', {
        file, tensor, expected: `${buf.length} bytes at position ${position}`, found: `${done} bytes`,
      });
    }
    done += got;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A short description of an untrusted JSON value; never stringifies it whole (it may be huge or deep). */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) {
    const flat = v.length <= 4 && v.every((x) => typeof x !== 'object' || x === null);
    return flat ? `[${v.map(describe).join(', ')}]` : `an array of length ${v.length}`;
  }
  if (typeof v === 'string') return JSON.stringify(clip(v));
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v === 'object' ? 'an object' : typeof v;
}

function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function clipShape(shape: number[]): string {
  return shape.length > 8 ? `${shapeString(shape.slice(0, 8)).slice(0, -1)}, … (${shape.length} dims)]` : shapeString(shape);
}
