// The cpu sampler's exp (asm/math.ts): expd must give V8's Math.exp bit for bit (the cpu backend picks the
// ids core's TokenFilter picks on the host), and expd2 must give expd's bits on each of its two lanes.
// A small module over math.ts alone, compiled here with the AssemblyScript compiler.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import asc from 'assemblyscript/asc';
import { Rng } from '@zinfer/core';
import { requireWasm } from '../src/cpu/wasm-api.js';

const ASM = join(import.meta.dirname, '../asm');
const ENTRY = `
import { expd, expd2 } from './math';
export function t_expd(x: f64): f64 { return expd(x); }
export function t_expd2(a: f64, b: f64, lane: i32): f64 {
  const v = expd2(f64x2.replace_lane(f64x2.splat(a), 1, b));
  return lane == 0 ? f64x2.extract_lane(v, 0) : f64x2.extract_lane(v, 1);
}`;

async function mathModule(): Promise<{ t_expd: (x: number) => number; t_expd2: (a: number, b: number, lane: number) => number }> {
  const outputs = new Map<string, Uint8Array>();
  const errors: string[] = [];
  const { error } = await asc.main([join(ASM, '__math_entry.ts'), '--outFile', 'm.wasm', '--runtime', 'stub', '--enable', 'simd', '-O3', '--noAssert', '--use', 'abort='], {
    readFile: (name: string, baseDir: string) => {
      const path = resolve(baseDir, name);
      if (path === join(ASM, '__math_entry.ts')) return ENTRY;
      return existsSync(path) ? readFileSync(path, 'utf8') : null;
    },
    writeFile: (name: string, contents: string | Uint8Array) => void outputs.set(name, contents as Uint8Array),
    listFiles: () => [],
    stdout: { write: () => true },
    stderr: { write: (s: string) => (errors.push(String(s)), true) },
  });
  if (error) throw new Error(`compiling math.ts failed: ${error.message}\n${errors.join('')}`);
  const wasm = requireWasm();
  const instance = new wasm.Instance(await wasm.compile(outputs.get('m.wasm')!), {});
  return instance.exports as never;
}

const bits = (x: number) => new BigUint64Array(Float64Array.of(x).buffer)[0];

test('expd is Math.exp bit for bit, and expd2 is expd on each lane (random, edges, both sides of every branch)', async () => {
  const m = await mathModule();
  const rng = Rng.fromSeed(41);
  const xs = [0, -0, 1, -1, 1e-300, -1e-300, 5e-324, 693, -693, 693.0000001, -693.0000001, 700, -700, 709.78, 709.79, -745.1, -745.2, -800, 800,
    Infinity, -Infinity, NaN, 0.5 * Math.LN2, -0.5 * Math.LN2, 1e-8, -1e-8];
  for (let i = 0; i < 20000; i++) xs.push((rng.next() * 2 - 1) * (i % 3 === 0 ? 760 : i % 3 === 1 ? 40 : 1));
  for (const x of xs) assert.is(bits(m.t_expd(x)), bits(Math.exp(x)), `expd(${x})`);
  for (let i = 0; i + 1 < xs.length; i++) {
    const [a, b] = [xs[i], xs[xs.length - 1 - i]];
    assert.is(bits(m.t_expd2(a, b, 0)), bits(m.t_expd(a)), `expd2 lane 0 (${a}, ${b})`);
    assert.is(bits(m.t_expd2(a, b, 1)), bits(m.t_expd(b)), `expd2 lane 1 (${a}, ${b})`);
  }
});

test.run();
