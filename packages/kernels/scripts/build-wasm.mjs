#!/usr/bin/env node
// Builds the cpu backend's WebAssembly kernels: asm/*.ts (AssemblyScript) plus the generated
// microkernels → dist/cpu-kernels.wasm, and the same with relaxed-SIMD FMA microkernels →
// dist/cpu-kernels-fma.wasm (the backend picks it where the engine accepts relaxed SIMD: see
// src/cpu/wasm-module.ts). Run by the package's build script; the cpu tests run it too, and it does
// nothing when both are newer than every source (pass --force to rebuild anyway).
//
// Flags: no runtime and no static data (the module is instantiated once per thread over one shared
// memory, so a data segment would be re-written by every instantiation and any global state would be
// per thread); shared memory imported from env.memory, at most 65536 pages (4 GiB, the wasm32 limit);
// 128-bit SIMD and atomics.
import asc from 'assemblyscript/asc';
import { setFlagsFromString } from 'node:v8';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { microkernelSource } from './asm-microkernels.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const asmDir = join(root, 'asm');
const GENERATED = 'microkernels.ts';
export const WASM_FILE = join(root, 'dist', 'cpu-kernels.wasm');
export const FMA_WASM_FILE = join(root, 'dist', 'cpu-kernels-fma.wasm');

const FLAGS = [
  '--runtime', 'stub', '--importMemory', '--sharedMemory', '--maximumMemory', '65536', '--enable', 'simd,threads',
  '-O3', '--noAssert', '--noExportMemory', '--use', 'abort=',
];

function newestSource() {
  const files = [...readdirSync(asmDir).filter((f) => f.endsWith('.ts')).map((f) => join(asmDir, f)), ...readdirSync(here).map((f) => join(here, f))];
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

/** Both builds; each is skipped when up to date. */
export async function buildAll({ force = false, wat = false } = {}) {
  const plain = await buildWasm({ force, wat });
  const fma = await buildWasm({ force, wat, fma: true, out: FMA_WASM_FILE });
  return [plain, fma];
}

export async function buildWasm({ force = false, out = WASM_FILE, wat = false, fma = false } = {}) {
  if (!force && existsSync(out) && statSync(out).mtimeMs >= newestSource()) return { built: false, out };
  const outputs = new Map();
  const stderr = [];
  const argv = [join(asmDir, 'index.ts'), '--outFile', 'cpu-kernels.wasm', ...(wat ? ['--textFile', 'cpu-kernels.wat'] : []), ...FLAGS, ...(fma ? ['--enable', 'relaxed-simd'] : [])];
  const { error } = await asc.main(argv, {
    readFile(name, baseDir) {
      const path = resolve(baseDir, name);
      if (path === join(asmDir, GENERATED)) return microkernelSource({ fma });
      return existsSync(path) ? readFileSync(path, 'utf8') : null;
    },
    writeFile(name, contents) {
      outputs.set(name, contents);
    },
    listFiles: () => [],
    stdout: { write: () => true },
    stderr: { write: (s) => (stderr.push(String(s)), true) },
  });
  if (error) throw new Error(`AssemblyScript build of ${asmDir} failed: ${error.message}\n${stderr.join('')}`);
  const bytes = outputs.get('cpu-kernels.wasm');
  checkModule(bytes);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bytes);
  if (wat) writeFileSync(out.replace(/\.wasm$/, '.wat'), outputs.get('cpu-kernels.wat'));
  return { built: true, out };
}

/** The module must import only env.memory (shared) and carry no data segments (see above). */
function checkModule(bytes) {
  // Node 20's V8 validates relaxed SIMD only behind this flag (later ones by default).
  setFlagsFromString('--experimental-wasm-relaxed-simd');
  const mod = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(mod);
  const bad = imports.filter((i) => !(i.module === 'env' && i.name === 'memory' && i.kind === 'memory'));
  if (bad.length) throw new Error(`cpu kernels import ${bad.map((i) => `${i.module}.${i.name}`).join(', ')}; only env.memory is allowed`);
  // Section id 11 is the data section; walk the section headers to find one.
  let p = 8;
  while (p < bytes.length) {
    const id = bytes[p++];
    let size = 0;
    let shift = 0;
    let b;
    do {
      b = bytes[p++];
      size |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (id === 11 && size > 1) throw new Error('cpu kernels have a data segment (static data); kernels must keep all data in memory passed by pointer');
    p += size;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  for (const r of await buildAll({ force: args.includes('--force'), wat: args.includes('--wat') })) console.log(r.built ? `built ${r.out}` : `${r.out} is up to date`);
}
