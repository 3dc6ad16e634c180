// The parts of the WebAssembly JS API the cpu backend uses, typed here because lib ES2022 and
// @types/node 20 do not declare the WebAssembly global (a module-scoped declaration: nothing global).
export interface WasmModule {
  readonly [Symbol.toStringTag]: string;
}

export interface WasmMemory {
  readonly buffer: SharedArrayBuffer;
  grow(deltaPages: number): number;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface ExportDescriptor {
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
}

interface WasmApi {
  Module: { exports(module: WasmModule): ExportDescriptor[] };
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => WasmMemory;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  validate(bytes: Uint8Array): boolean;
}

declare const WebAssembly: WasmApi | undefined;

/** The WebAssembly global, or null where the runtime has none. */
export const wasmApi: WasmApi | null = typeof WebAssembly === 'object' && WebAssembly !== null ? WebAssembly : null;

export function requireWasm(): WasmApi {
  if (!wasmApi) throw new Error('this JavaScript runtime has no WebAssembly');
  return wasmApi;
}
