// The host → device bandwidth that weight streaming is measured against: copies from page-locked memory
// on a copy stream (as streamed programs make them), timed with device events; the best of several rounds,
// after a warm-up. Benches divide streamed bytes by it to get the forward-time limit of a run.
import { CudaDevice } from './device.js';
import { eventDone } from './copy-engine.js';
import { HostMemory } from './host-memory.js';
import { devicePinnedAllocator } from './numa-host.js';
import { CudaStream } from './stream.js';

export interface H2dProbeResult {
  /** Best copy rate, GB/s (10⁹ bytes), pinned source. */
  pinnedGbPerS: number;
  bytes: number;
  rounds: number;
  /** Each round's rate. */
  samples: number[];
}

export async function pinnedCopyProbe(ordinal = 0, opts: { bytes?: number; rounds?: number } = {}): Promise<H2dProbeResult> {
  const bytes = opts.bytes ?? 1 << 30;
  const rounds = opts.rounds ?? 5;
  const device = CudaDevice.open(ordinal);
  const gpu = new CudaStream(device, { cacheDir: null });
  const host = new HostMemory(devicePinnedAllocator(device.driver, ordinal, () => device.enter())); // as the backend pins
  const src = host.alloc(bytes);
  new Uint8Array(src).fill(0x3c); // touched: pages resident before timing
  const dst = gpu.alloc(bytes, 'h2d probe');
  const copies = gpu.copyEngine();
  const [start, end] = [copies.event(), copies.event()];
  const samples: number[] = [];
  try {
    const addr = host.address(new Uint8Array(src, 0, 0))!;
    for (let r = 0; r <= rounds; r++) {
      copies.record(start, 'copy');
      copies.copy(dst, addr, bytes);
      copies.record(end, 'copy');
      await eventDone(copies, end);
      if (r > 0) samples.push(bytes / (copies.elapsedMs(start, end) / 1000) / 1e9); // round 0 warms up
    }
  } finally {
    copies.destroyEvent(start);
    copies.destroyEvent(end);
    gpu.free(dst);
    gpu.dispose();
    host.free(src);
  }
  return { pinnedGbPerS: Math.max(...samples), bytes, rounds, samples };
}
