// Weight-loading progress on stderr. A bar only when stderr is a terminal: in pipes and logs (and under
// tests) a redrawn bar is noise, so it stays silent there. stdout is never touched (--json owns it).
import cliProgress from 'cli-progress';

export interface LoadProgress {
  /** EngineConfig.onLoadProgress: (weights done, weights total, weight name). */
  update(done: number, total: number, name: string): void;
  /** Removes the bar; safe to call when it never started. */
  stop(): void;
}

export function loadProgress(stderr: NodeJS.WritableStream & { isTTY?: boolean }): LoadProgress {
  if (!stderr.isTTY) return { update() {}, stop() {} };
  let bar: cliProgress.SingleBar | null = null;
  return {
    update(done, total, name) {
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { stream: stderr, format: 'loading weights {bar} {value}/{total} {name}', clearOnComplete: true, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0, { name });
      }
      bar.update(done, { name });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
