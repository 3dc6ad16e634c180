// Backpressure for one connection (a WebSocket, or an HTTP response streaming SSE). After each send
// the owner calls check(): once the unsent backlog (ws.bufferedAmount, res.writableLength) passes the
// limit, every request of the connection is paused in the engine, so nothing more is generated for a
// reader that does not read; they resume when the backlog halves. A backlog that stays stuck past the
// timeout calls onStall (the owner closes the connection with a clear code).
import type { GenerationStream } from '@zinfer/core';

const POLL_MS = 10;

export class OutputGate {
  private readonly streams = new Set<GenerationStream>();
  private pausedSince: number | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly backlog: () => number,
    private readonly maxBytes: number,
    private readonly timeoutMs: number,
    private readonly onStall: (backlog: number, ms: number) => void,
  ) {}

  get paused(): boolean {
    return this.pausedSince !== null;
  }

  add(stream: GenerationStream): void {
    this.streams.add(stream);
    if (this.paused) stream.pause();
  }

  delete(stream: GenerationStream): void {
    this.streams.delete(stream);
  }

  check(): void {
    if (this.paused || this.backlog() <= this.maxBytes) return;
    this.pausedSince = performance.now();
    for (const s of this.streams) s.pause();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref?.();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.pausedSince = null;
  }

  private poll(): void {
    const backlog = this.backlog();
    if (backlog <= this.maxBytes / 2) {
      this.close();
      for (const s of this.streams) s.resume();
      return;
    }
    const ms = performance.now() - this.pausedSince!;
    if (ms > this.timeoutMs) {
      this.close();
      this.onStall(backlog, ms);
    }
  }
}
