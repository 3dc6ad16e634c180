// The record a benchmark run leaves: a flat JSON object of named numbers plus the machine (cpu, card),
// date and commit, written to bench/results/<bench>-<machine>.json (and --json FILE), and the table
// printed for people. Keys are snake_case with their unit last; a figure that was not measured is null.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';

export type BenchRecord = Record<string, number | string | null>;

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryBytes: number;
  /** Short file-name slug: CPU model and core count, e.g. amd-epyc-2c. */
  slug: string;
}

export function machineInfo(): MachineInfo {
  const cpu = cpus()[0]?.model.trim() || 'unknown-cpu';
  const cores = availableParallelism();
  const slug = cpu
    .toLowerCase()
    .replace(/\((r|tm)\)/g, '')
    .replace(/\b(cpu|processor|\d+-core)\b/g, '')
    .replace(/@.*$/, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return { cpu, cores, memoryBytes: totalmem(), slug: `${slug || 'cpu'}-${cores}c` };
}

/** Short hash of HEAD, with "-dirty" when the tree has changes; null outside a git checkout. */
export function gitCommit(cwd: string): string | null {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' });
  if (head.status !== 0) return null;
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' });
  return `${head.stdout.trim()}${dirty.status === 0 && dirty.stdout.trim() ? '-dirty' : ''}`;
}

export function writeRecord(path: string, record: BenchRecord): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(record, null, 2)}\n`);
}

/** A Markdown table (readable as it is, and pasted as it is into BENCHMARKS.md). */
export function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

/** 1.10 G, 894 k: a count in SI units with 3 significant digits (bytes: unit 'B'). */
export function si(x: number, unit = ''): string {
  const prefixes: [number, string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  const [scale, prefix] = prefixes.find(([s]) => Math.abs(x) >= s) ?? [1, ''];
  return `${fmt(x / scale)} ${prefix}${unit}`;
}

/** Cores kept busy over `ms` by every process, this one included (mostly idle while it waits). */
export async function busyCores(ms = 500): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  return b.total > a.total ? ((b.busy - a.busy) / (b.total - a.total)) * cpus().length : 0;
}

/**
 * Starts measuring how many cores *other* processes keep busy; the returned function stops and answers.
 * All-core busy time minus this process's own (worker threads included) and its waited-for children's
 * (the probes), from /proc/self/stat; null where that file does not exist.
 */
export function otherProcessesMeter(): () => number | null {
  const a = cpuTimes();
  const ownA = ownCpuMs();
  return () => {
    const b = cpuTimes();
    const ownB = ownCpuMs();
    if (ownA === null || ownB === null || b.total <= a.total) return null;
    const wallMs = (b.total - a.total) / cpus().length;
    return Math.max(0, b.busy - a.busy - (ownB - ownA)) / wallMs;
  };
}

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times: t } of cpus()) {
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}

/** This process's CPU ms plus its reaped children's (Linux: cutime + cstime, at the usual 100 ticks/s). */
function ownCpuMs(): number | null {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
    const children = (Number(fields[13]) + Number(fields[14])) * 10; // fields 16 and 17 of stat(5)
    const own = process.cpuUsage();
    return (own.user + own.system) / 1e3 + children;
  } catch {
    return null;
  }
}

/** 3 significant digits, thousands kept whole: 0.512, 12.3, 471, 1530. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 10 ** digits) return Math.round(x).toString();
  return Number(x.toPrecision(digits)).toString();
}
