// Reads a Hugging Face config.json with typed getters: a wrong or missing field becomes a ModelFormatError
// naming config.json and the field, with what was expected and what was found.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelFormatError } from './errors.js';

export class ConfigReader {
  constructor(readonly raw: Record<string, unknown>, readonly file: string) {}

  static load(dir: string): ConfigReader {
    const file = join(dir, 'config.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new ModelFormatError('model directory has no config.json', { file, expected: 'a Hugging Face config.json', found: 'no such file' });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ModelFormatError('config.json is not valid JSON', { file, found: (e as Error).message });
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ModelFormatError('config.json must hold a JSON object', { file, found: Array.isArray(raw) ? 'an array' : typeof raw });
    }
    return new ConfigReader(raw as Record<string, unknown>, file);
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  /** The first of `fields` that is present, for fields renamed between transformers versions. */
  pick(...fields: string[]): string {
    return fields.find((f) => this.has(f)) ?? fields[0];
  }

  int(field: string, fallback?: number): number {
    const v = this.get(field, fallback);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(field, 'a non-negative integer', v);
    return v;
  }

  positiveInt(field: string, fallback?: number): number {
    const v = this.int(field, fallback);
    if (v === 0) this.fail(field, 'a positive integer', v);
    return v;
  }

  num(field: string, fallback?: number): number {
    const v = this.get(field, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, 'a finite number', v);
    return v;
  }

  bool(field: string, fallback?: boolean): boolean {
    const v = this.get(field, fallback);
    if (typeof v !== 'boolean') this.fail(field, 'true or false', v);
    return v;
  }

  str(field: string, fallback?: string): string {
    const v = this.get(field, fallback);
    if (typeof v !== 'string') this.fail(field, 'a string', v);
    return v;
  }

  /** An int, a list of ints, or absent (token ids such as eos_token_id). */
  intList(field: string): number[] {
    const v = this.raw[field];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) this.fail(field, 'a token id or a list of token ids', v);
    return list as number[];
  }

  /** A nested object field as its own reader (rope_parameters, rope_scaling), or null when absent. */
  object(field: string): ConfigReader | null {
    const v = this.raw[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'an object', v);
    return new ConfigReader(v as Record<string, unknown>, `${this.file} → ${field}`);
  }

  fail(field: string, expected: string, found: unknown): never {
    throw new ModelFormatError(`config.json field ${field} is invalid`, { file: this.file, field, expected, found: show(found) });
  }

  private get(field: string, fallback: unknown): unknown {
    const v = this.raw[field];
    if (v === undefined || v === null) {
      if (fallback === undefined) throw new ModelFormatError(`config.json lacks field ${field}`, { file: this.file, field, expected: 'a value', found: 'nothing' });
      return fallback;
    }
    return v;
  }
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + '...' : s;
}
