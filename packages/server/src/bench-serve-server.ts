// The server under test for `npm run bench:serve`: `zinfer serve` in a child process (so the load
// generator never shares its event loop or cores' time slices with the engine's main thread), on
// 127.0.0.1 with an OS-chosen port. Peak RSS is the child's VmHWM (Linux), else the highest
// process_resident_memory_bytes seen on /metrics.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { moduleDir } from './module-dir.js';

export interface ServedChild {
  url: string;
  wsUrl: string;
  backend: string;
  /** Peak resident memory of the server process so far, in bytes. */
  peakRss(): Promise<number | null>;
  stop(): Promise<void>;
}

export function startServeChild(args: string[], log: (line: string) => void): Promise<ServedChild> {
  // From dist (node dist/bench-serve.js) run dist/cli.js; from sources (tsx) run src/cli.ts with the same loader.
  const dir = moduleDir();
  const cli = existsSync(join(dir, 'cli.js')) ? join(dir, 'cli.js') : join(dir, 'cli.ts');
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, cli, 'serve', '--host', '127.0.0.1', '--port', '0', '--heartbeat', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let rssSeen = 0;
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not get ready in 120 s: ${err}`)), 120_000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    void exited.then((code) => reject(new Error(`the server exited (${code}): ${err.trim()}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!/ready/.test(out)) return;
      clearTimeout(timer);
      const url = /playground\s+(\S+)/.exec(out)![1];
      const wsUrl = /websocket\s+(\S+)/.exec(out)![1];
      const backend = /on backend (\S+)/.exec(out)![1];
      log(out.trim().split('\n').pop()!);
      resolve({
        url, wsUrl, backend,
        async peakRss() {
          const hwm = vmHwm(child.pid!);
          if (hwm !== null) return hwm;
          const m = /^zinfer_process_resident_memory_bytes (\S+)$/m.exec(await (await fetch(`${url}metrics`)).text());
          rssSeen = Math.max(rssSeen, m ? Number(m[1]) : 0);
          return rssSeen || null;
        },
        async stop() {
          child.kill('SIGTERM');
          await exited;
        },
      });
    });
  });
}

/** Peak resident set size of a process (Linux /proc), in bytes; null elsewhere. */
function vmHwm(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
