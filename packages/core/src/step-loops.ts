// The engine's own step loop, one per step lane (engine.ts says what lanes are): each lane drives its
// steps while there is work, yielding to the event loop between steps so requests can join, and stops when
// a step computes nothing and nothing woke it; wake() restarts the lanes that stopped.
import type { StepReport } from './engine.js';

/** What the loops ask of their engine. */
export interface LoopHost {
  /** Lanes now (the program's concurrent steps; 1 for most programs). */
  lanes(): number;
  /** Whether the loops should go on: the engine is open and has running or waiting requests. */
  hasWork(): boolean;
  /** One step of lane k's sequences (lanes > 1), or one step over every sequence (one lane). */
  step(lane: number, lanes: number): Promise<StepReport>;
}

export class StepLoops {
  /** Lanes whose loop is running. */
  private readonly looping = new Set<number>();
  /** Per lane, set by wake(): something changed during a step that planned nothing, so the loop must not stop. */
  private woken: boolean[] = [];
  /** Steps in flight, for settle(). */
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly host: LoopHost) {}

  /** Something changed (a request came, resumed, was cancelled): every lane looks again. */
  wake(): void {
    this.woken = this.woken.map(() => true);
    this.start();
  }

  /** Resolves when the loops' steps in flight are done. */
  async settle(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  /** Starts the loop of every lane not running. */
  private start(): void {
    const lanes = this.host.lanes();
    while (this.woken.length < lanes) this.woken.push(true);
    for (let k = 0; k < lanes; k++) if (!this.looping.has(k)) this.run(k, lanes);
  }

  private run(k: number, lanes: number): void {
    this.looping.add(k);
    const tick = async (): Promise<void> => {
      try {
        while (this.host.hasWork()) {
          // Nothing to compute while work remains means every runnable request of the lane is paused, in
          // another lane's step or waits for blocks: stop instead of spinning; wake() restarts the lane.
          this.woken[k] = false;
          const report = await this.track(this.host.step(k, lanes));
          if (report.tokens === 0 && !this.woken[k]) break;
          if (lanes > 1 && report.finished > 0) this.wake(); // freed blocks may admit requests into idle lanes
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        this.looping.delete(k);
      }
    };
    void tick();
  }

  private track<T>(step: Promise<T>): Promise<T> {
    const done = step.catch(() => {});
    this.inFlight.add(done);
    void done.then(() => this.inFlight.delete(done));
    return step;
  }
}
