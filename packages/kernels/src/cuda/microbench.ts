// A microbenchmark of the CUDA backend's building blocks, measured in one run on one card: the device's
// copy and read bandwidth (the memory limits), the decode GEMV at 1–8 rows on Llama-2-7B shapes against
// the read bandwidth (and cuBLAS at 8), the host and device cost of a launch, and cuBLAS GEMMs (f32 4096³,
// bf16 8192³ for the prefill limit, f16 on prefill shapes). Timed with CUDA events after warm-up, median of
// repeats, on random data; weights rotate through a 2 GiB buffer so no timed read is served from L2.
import { f16ToF32, f32ToF16, type FloatDType } from '@zinfer/core';
import { CudaDevice } from './device.js';
import type { Ptr } from './driver-api.js';
import { GEMV_BIT_IDENTICAL_VARIANTS, GEMV_KERNEL_VARIANTS, gemvBlockRows, gemvBlocks, gemvKernel, type GemvKernelVariant } from './gemv-variant.js';
import { EPI, GEMV_THREADS, GEMV_WROWS, gemvArgs, NORM, type GemvSegment } from './linear-launch.js';
import { packStep } from './step-metadata.js';
import { CudaStream } from './stream.js';

export interface GemvTiming {
  /** e.g. 'q|k|v 4096→12288' */
  shape: string;
  /** The kernel variant (gemv-variant.ts), or cuBLAS: one GEMM over the shape's outputs, without the fused norm or epilogue. */
  variant: GemvKernelVariant | 'cublas';
  rows: number;
  us: number;
  GBps: number;
  fractionOfRead: number;
}

export interface MicrobenchResult {
  device: string;
  copyGBps: number;
  /** A read-only kernel over 2 GiB (16-byte loads, 8 in flight a thread). */
  readGBps: number;
  /** The GEMV on [11008, 4096] f16 weights with f32 activations (parity mode), as the first microbench. */
  gemv: { rows: number; ms: number; GBps: number; fractionOfCopy: number }[];
  gemvMaxRelError: number;
  /** The 16-bit decode GEMVs (f16 weights and activations) on each linear group of a Llama-2-7B layer. */
  gemvSweep: GemvTiming[];
  /** Shapes where a bit-identical variant's outputs (8 rows) differ in any bit from v1's: should be empty. */
  gemvVariantMismatches: string[];
  /** The mma variant's largest difference from v1's outputs over the sweep, relative to v1's largest output. */
  gemvMmaMaxRelError: number;
  launchHostUs: number;
  launchDeviceUs: number;
  /** null when cuBLAS could not run; cublasError says why. */
  cublasF32Tflops: number | null;
  cublasBf16Tflops: number | null;
  /** f16 GEMMs of a 2048-token prefill of Llama-2-7B (q/k/v/o, gate/up, down). */
  cublasPrefill: { shape: string; tflops: number }[];
  /** f16 GEMMs of a 64-sequence decode step of Llama-2-7B: weight bytes over time, against the read bandwidth. */
  cublasDecode64: { shape: string; us: number; fractionOfRead: number }[];
  /** The non-GEMM kernels of one layer of a 2048-token Llama-2-7B prefill (f16), µs each. */
  prefillKernels: { kernel: string; us: number }[];
  cublasError?: string;
}

const GiB = 2 ** 30;

/** readOnly: stop after the copy and read bandwidths (what a bench's limits need); the rest is empty, NaN or null. */
export function cudaMicrobench(ordinal = 0, opts: { bufferBytes?: number; readOnly?: boolean } = {}): MicrobenchResult {
  const device = CudaDevice.open(ordinal);
  const gpu = new CudaStream(device);
  const { api } = device.driver;
  const check = (call: string, status: number) => device.driver.check(call, status);
  const event = (): Ptr => {
    const e: [Ptr | null] = [null];
    check('cuEventCreate', api.cuEventCreate(e, 0));
    return e[0]!;
  };
  const [start, stop] = [event(), event()];
  /** Median over `repeats` of the mean ms of `inner` calls of fn(i), timed with events. */
  const time = (fn: (i: number) => void, inner: number, repeats = 7): number => {
    fn(0);
    gpu.synchronize();
    const samples: number[] = [];
    let call = 1;
    for (let r = 0; r < repeats; r++) {
      check('cuEventRecord', api.cuEventRecord(start, gpu.stream));
      for (let i = 0; i < inner; i++) fn(call++);
      check('cuEventRecord', api.cuEventRecord(stop, gpu.stream));
      check('cuEventSynchronize', api.cuEventSynchronize(stop));
      const ms: [number] = [0];
      check('cuEventElapsedTime', api.cuEventElapsedTime(ms, start, stop));
      samples.push(ms[0] / inner);
    }
    gpu.synchronize();
    return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
  };
  const allocs: bigint[] = [];
  const alloc = (bytes: number, what: string) => {
    const p = gpu.alloc(bytes, what);
    allocs.push(p);
    return p;
  };
  const randomHalf = (n: number, scale: number) => {
    const h = new Uint16Array(n);
    for (let i = 0; i < n; i++) h[i] = f32ToF16((Math.random() * 2 - 1) * scale);
    return h;
  };
  try {
    // A large buffer of random f16 (a 64 MiB random chunk copied over it): the weights of the GEMV sweep
    // and the read-bandwidth probe.
    const big = opts.bufferBytes ?? 2 * GiB;
    const buf = alloc(big, 'benchmark buffer');
    const chunk = 64 * 2 ** 20;
    const seed = alloc(chunk, 'random chunk');
    gpu.upload(seed, randomHalf(chunk / 2, 1 / 16));
    for (let o = 0; o < big; o += chunk) check('cuMemcpyDtoDAsync_v2', api.cuMemcpyDtoDAsync_v2(buf + BigInt(o), seed, Math.min(chunk, big - o), gpu.stream));

    // Copy bandwidth: 1 GiB device to device, bytes read + written.
    const half = Math.floor(big / 2 / 256) * 256;
    const copyMs = time(() => check('cuMemcpyDtoDAsync_v2', api.cuMemcpyDtoDAsync_v2(buf + BigInt(half), buf, half, gpu.stream)), 3, 5);
    const copyGBps = (2 * half) / (copyMs * 1e6);
    for (let o = 0; o < big; o += chunk) check('cuMemcpyDtoDAsync_v2', api.cuMemcpyDtoDAsync_v2(buf + BigInt(o), seed, Math.min(chunk, big - o), gpu.stream));

    // Read bandwidth: the whole buffer, read once per launch.
    const sink = alloc(1 << 20, 'read sink');
    const readBlocks = Math.min(device.props.multiprocessors * 8, (1 << 20) / 4);
    const n16 = Math.floor(big / 16);
    const readMs = time(() => gpu.launch('read_bandwidth', { x: readBlocks }, 256, [sink, buf, n16]), 5, 7);
    const readGBps = big / (readMs * 1e6);
    const device_ = `${device.props.name} (sm_${device.props.arch})`;
    if (opts.readOnly) {
      const none = { gemv: [], gemvMaxRelError: NaN, gemvSweep: [], gemvVariantMismatches: [], gemvMmaMaxRelError: NaN, launchHostUs: NaN, launchDeviceUs: NaN };
      return { device: device_, copyGBps, readGBps, ...none, cublasF32Tflops: null, cublasBf16Tflops: null, cublasPrefill: [], cublasDecode64: [], prefillKernels: [] };
    }

    // Parity-mode GEMV (f32 activations) on [11008, 4096] f16, as measured since the first run.
    const outF = 11008;
    const inF = 4096;
    const wBytes = outF * inF * 2;
    const xHost = Float32Array.from({ length: 8 * inF }, () => Math.random() * 2 - 1);
    const x = alloc(xHost.byteLength, 'gemv input');
    gpu.upload(x, xHost);
    const y = alloc(8 * 32000 * 4, 'gemv output');
    const rotations = Math.max(1, Math.floor(big / wBytes));
    const wAt = (i: number) => buf + BigInt((i % rotations) * wBytes);
    const parityArgs = (w: bigint, rows: number) => gemvArgs({ segs: [[y, w, 0n, outF]], x, rows, inF, epi: EPI.none });
    const rowsVariant = (rows: number) => (rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8);
    const gemv = [1, 2, 4, 8].map((rows) => {
      const ms = time((i) => gpu.launch(`gemv${rowsVariant(rows)}_f16_f32`, { x: Math.ceil(outF / GEMV_WROWS) }, GEMV_THREADS, parityArgs(wAt(i), rows)), 20);
      const bytes = wBytes + rows * inF * 4 + rows * outF * 4;
      const GBps = bytes / (ms * 1e6);
      return { rows, ms, GBps, fractionOfCopy: GBps / copyGBps };
    });
    // Check 64 outputs of each of 8 rows against a double-precision dot product (weights read back).
    gpu.launch('gemv8_f16_f32', { x: Math.ceil(outF / GEMV_WROWS) }, GEMV_THREADS, parityArgs(wAt(0), 8));
    const yHost = new Float32Array(8 * outF);
    gpu.download(yHost, y);
    const wHost = new Uint16Array(outF * inF);
    gpu.download(wHost, wAt(0));
    let maxErr = 0;
    let scale = 0;
    for (let s = 0; s < 64; s++) {
      const o = Math.floor(Math.random() * outF);
      for (let r = 0; r < 8; r++) {
        let dot = 0;
        for (let i = 0; i < inF; i++) dot += xHost[r * inF + i] * f16ToF32(wHost[o * inF + i]);
        maxErr = Math.max(maxErr, Math.abs(dot - yHost[r * outF + o]));
        scale = Math.max(scale, Math.abs(dot));
      }
    }

    // The 16-bit decode GEMVs of a Llama-2-7B layer (and its LM head), f16 weights and activations, with
    // the fusions the decode step uses: RMSNorm + q|k|v, o + residual, RMSNorm + gate/up + SiLU, down + residual.
    const xh = alloc(8 * 11008 * 2, 'f16 input');
    gpu.upload(xh, randomHalf(8 * 11008, 1));
    const res = alloc(8 * 11008 * 2, 'f16 residual');
    gpu.upload(res, randomHalf(8 * 11008, 1));
    const normW = alloc(11008 * 4, 'norm weight');
    gpu.upload(normW, Float32Array.from({ length: 11008 }, () => 1 + Math.random() * 0.1));
    const yh = alloc(8 * 32000 * 4, 'f16 outputs');
    const gemvSweep: GemvTiming[] = [];
    const gemvVariantMismatches: string[] = [];
    let gemvMmaMaxRelError = 0;
    const sweep = (shape: string, n: number[], k: number, epi: number, norm: number) => {
      const bytes = n.reduce((a, b) => a + b, 0) * k * 2;
      const rot = Math.max(1, Math.floor(big / bytes));
      for (const rows of [1, 2, 4, 8]) {
        const args = (i: number) => {
          let at = buf + BigInt((i % rot) * bytes);
          const segs = n.map((nj, j): GemvSegment => {
            const w = at;
            at += BigInt(nj * k * 2);
            return [j === 0 || epi === EPI.none ? yh + BigInt(j * 8 * 12288 * 2) : 0n, w, 0n, nj];
          });
          return gemvArgs({ segs, x: xh, res: epi === EPI.residual ? res : 0n, normW: norm ? normW : 0n, eps: 1e-5, rows, inF: k, epi, act: 1, norm });
        };
        const blocksOf = (kernel: string) => gemvBlocks(n, epi === EPI.gated, gemvBlockRows(kernel));
        const seen = new Set<string>();
        for (const variant of GEMV_KERNEL_VARIANTS) {
          const kernel = gemvKernel(rowsVariant(rows), 'f16', 'f16', variant);
          if (seen.has(kernel)) continue; // a variant without an entry at these rows is v1
          seen.add(kernel);
          const ms = time((i) => gpu.launch(kernel, { x: blocksOf(kernel) }, GEMV_THREADS, args(i)), 20);
          const GBps = bytes / (ms * 1e6);
          gemvSweep.push({ shape, variant, rows, us: ms * 1000, GBps, fractionOfRead: GBps / readGBps });
        }
        if (rows === 8 && gpu.gemm) {
          // What a step of 9 rows runs (one GEMM; its norm and epilogue are kernels of their own): past 8 rows the
          // engine takes cuBLAS. (Without cuBLAS the section below records why.)
          try {
            const outF = n.reduce((a, b) => a + b, 0);
            const ms = time((i) => gpu.gemm!({ y: yh, x: xh, w: buf + BigInt((i % rot) * bytes), dtype: 'f16', yDtype: 'f16', rows, inF: k, outF }), 20);
            const GBps = bytes / (ms * 1e6);
            gemvSweep.push({ shape, variant: 'cublas', rows, us: ms * 1000, GBps, fractionOfRead: GBps / readGBps });
          } catch {}
        }
        // The FMA variants add in the same order: their outputs must match v1's bit for bit (dense and eight have
        // entries at every row count; roll and occ at 1–2 rows, v1 above). mma adds in another order: within rounding.
        const outputs = GEMV_KERNEL_VARIANTS.map((variant) => {
          gpu.fill32(yh, 0, (8 * 32000 * 4) / 4);
          const kernel = gemvKernel(rows, 'f16', 'f16', variant);
          gpu.launch(kernel, { x: blocksOf(kernel) }, GEMV_THREADS, args(0));
          const host = new Uint16Array(8 * 32000 * 2);
          gpu.download(host, yh);
          return host;
        });
        GEMV_KERNEL_VARIANTS.forEach((variant, v) => {
          if ((GEMV_BIT_IDENTICAL_VARIANTS as readonly string[]).includes(variant)) {
            if (!outputs[v].every((b, i) => b === outputs[0][i])) gemvVariantMismatches.push(`${variant} ${shape} (${rows} rows)`);
            return;
          }
          let diff = 0; // over the whole output buffer (zeroed before each launch): every segment's rows
          let largest = 0;
          for (let i = 0; i < outputs[0].length; i++) {
            const want = f16ToF32(outputs[0][i]);
            diff = Math.max(diff, Math.abs(f16ToF32(outputs[v][i]) - want));
            largest = Math.max(largest, Math.abs(want));
          }
          gemvMmaMaxRelError = Math.max(gemvMmaMaxRelError, diff / (largest || 1));
        });
      }
    };
    sweep('norm+q|k|v 4096→3×4096', [4096, 4096, 4096], 4096, EPI.none, NORM.rms);
    sweep('o+residual 4096→4096', [4096], 4096, EPI.residual, NORM.none);
    sweep('norm+gate/up+silu 4096→2×11008', [11008, 11008], 4096, EPI.gated, NORM.rms);
    sweep('down+residual 11008→4096', [4096], 11008, EPI.residual, NORM.none);
    sweep('lm head 4096→32000', [32000], 4096, EPI.none, NORM.none);

    // The non-GEMM kernels of a prefill layer at 2048 rows, on random f16 data from `buf`.
    const prefillKernels: { kernel: string; us: number }[] = [];
    {
      const T = 2048;
      const H = 4096;
      const I = 11008;
      const region = (i: number) => buf + BigInt(i * T * I * 2);
      const [q, k, v, y, a, b] = [0, 1, 2, 3, 4, 5].map(region);
      const kc = alloc(T * H * 2, 'prefill K cache');
      const vc = alloc(T * H * 2, 'prefill V cache');
      const inv = alloc(64 * 8, 'inverse frequencies');
      gpu.upload(inv, Float64Array.from({ length: 64 }, (_, i) => 1 / 10000 ** ((2 * i) / 128)));
      const norm = normW;
      const seq = { queryStart: 0, queryLength: T, contextLength: T, blockTable: Int32Array.from({ length: T / 16 }, (_, i) => i) };
      const meta = packStep({
        tokenIds: new Int32Array(T), positions: Int32Array.from({ length: T }, (_, i) => i), slots: Int32Array.from({ length: T }, (_, i) => i),
        sequences: [seq], selectedRows: Int32Array.of(T - 1),
      }, 16);
      const m = alloc(meta.ints.byteLength, 'prefill metadata');
      gpu.upload(m, meta.ints);
      const at = (o: number) => m + BigInt(o * 4);
      const kernels: [string, () => void][] = [
        ['rms_norm_f16 2048×4096', () => gpu.launch('rms_norm_f16', { x: T }, 1024, [y, q, norm, H, 1e-5])],
        ['rope_kv_f16 2048 rows', () => gpu.launch('rope_kv_f16', { x: 1, y: T }, 128, [y, kc, vc, q, k, v, at(meta.at.positions), at(meta.at.slots), inv, 32, 32, 128, 128, 0, 1])],
        ['flash_prefill128_f16 2048 causal', () => gpu.launch('flash_prefill128_f16', { x: meta.tiles, y: 32 }, 128, [y, q, kc, vc, at(meta.at.tiles), at(meta.at.seqInfo), at(meta.at.blockTables), 32, 16, 0, 1 / Math.sqrt(128)])],
        ['add_f16 2048×4096 (×2 a layer)', () => gpu.launch('add_f16', { x: 8192 }, 256, [y, a, b, T * H])],
        ['activation_f16 gated 2048×11008', () => gpu.launch('activation_f16', { x: 8192 }, 256, [y, a, b, T * I, 1])],
      ];
      for (const [kernel, fn] of kernels) prefillKernels.push({ kernel, us: time(fn, 10, 5) * 1000 });
    }

    // Launch cost: a one-block kernel, back to back.
    const tiny = alloc(1024, 'launch probe');
    gpu.fill32(tiny, 0x3f800000, 256);
    const launches = 2000;
    const launchDeviceMs = time(() => gpu.launch('add_f32', { x: 1 }, 256, [tiny, tiny, tiny, 1]), launches, 3);
    const t0 = performance.now();
    for (let i = 0; i < launches; i++) gpu.launch('add_f32', { x: 1 }, 256, [tiny, tiny, tiny, 1]);
    const launchHostUs = ((performance.now() - t0) * 1000) / launches;
    gpu.synchronize();

    // cuBLAS: f32 4096³ (no TF32), bf16 8192³ (the prefill limit), f16 prefill shapes; random inputs from `buf`.
    let cublasF32Tflops: number | null = null;
    let cublasBf16Tflops: number | null = null;
    const cublasPrefill: { shape: string; tflops: number }[] = [];
    const cublasDecode64: { shape: string; us: number; fractionOfRead: number }[] = [];
    let cublasError: string | undefined;
    try {
      const gemmTflops = (dtype: FloatDType, m: number, n: number, k: number, inner: number) => {
        const bytesIn = (dtype === 'f32' ? 4 : 2) * (m * k + n * k);
        const out = alloc(m * n * 4, `gemm output ${m}×${n}`);
        const ms = time(() => gpu.gemm!({ y: out, x: buf, w: buf + BigInt(Math.ceil(bytesIn / 2 / 256) * 256), dtype, yDtype: dtype, rows: m, inF: k, outF: n }), inner, 5);
        return (2 * m * n * k) / (ms * 1e9);
      };
      cublasF32Tflops = gemmTflops('f32', 4096, 4096, 4096, 3);
      cublasBf16Tflops = gemmTflops('bf16', 8192, 8192, 8192, 5);
      for (const [shape, n, k] of [['2048×4096×4096', 4096, 4096], ['2048×11008×4096', 11008, 4096], ['2048×4096×11008', 4096, 11008]] as const) {
        cublasPrefill.push({ shape, tflops: gemmTflops('f16', 2048, n, k, 10) });
      }
      // Decode at 64 rows: weights rotate through `buf` so each product reads its matrix from HBM.
      const out64 = alloc(64 * 32000 * 2, 'gemm output 64 rows');
      const x64 = alloc(64 * 11008 * 2, 'gemm input 64 rows');
      gpu.upload(x64, randomHalf(64 * 11008, 1));
      for (const [shape, n, k] of [['64×4096×4096', 4096, 4096], ['64×11008×4096', 11008, 4096], ['64×4096×11008', 4096, 11008], ['64×32000×4096', 32000, 4096]] as const) {
        const wb = n * k * 2;
        const rot = Math.max(1, Math.floor(big / wb));
        const ms = time((i) => gpu.gemm!({ y: out64, x: x64, w: buf + BigInt((i % rot) * wb), dtype: 'f16', yDtype: 'f16', rows: 64, inF: k, outF: n }), 10, 5);
        cublasDecode64.push({ shape, us: ms * 1000, fractionOfRead: wb / (ms * 1e6) / readGBps });
      }
    } catch (e) {
      cublasError = (e as Error).message;
    }
    return {
      device: device_,
      copyGBps,
      readGBps,
      gemv,
      gemvMaxRelError: maxErr / (scale || 1),
      gemvSweep,
      gemvVariantMismatches,
      gemvMmaMaxRelError,
      launchHostUs,
      launchDeviceUs: launchDeviceMs * 1000,
      cublasF32Tflops,
      cublasBf16Tflops,
      cublasPrefill,
      cublasDecode64,
      prefillKernels,
      cublasError,
    };
  } finally {
    for (const p of allocs) gpu.free(p);
    api.cuEventDestroy_v2(start);
    api.cuEventDestroy_v2(stop);
    gpu.dispose();
  }
}
