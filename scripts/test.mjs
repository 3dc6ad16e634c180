#!/usr/bin/env node
// `npm test`: builds every package (nx, cached), runs every package's uvu suites, then prints one closing
// line "N passed, N failed" summed over all packages. Exit code is non-zero when anything failed.
import { spawn } from 'node:child_process';

const args = ['nx', 'run-many', '-t', 'test', '--outputStyle=stream', '--parallel=1', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true' } });
let passed = 0;
let total = 0;
let carry = '';
const scan = (chunk) => {
  const text = carry + chunk.toString();
  const lines = text.split('\n');
  carry = lines.pop() ?? '';
  for (const raw of lines) {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
    const t = /Total:\s+(\d+)/.exec(line);
    const p = /Passed:\s+(\d+)/.exec(line);
    if (t) total += Number(t[1]);
    if (p) passed += Number(p[1]);
  }
};
child.stdout.on('data', (c) => { process.stdout.write(c); scan(c); });
child.stderr.on('data', (c) => { process.stderr.write(c); scan(c); });
child.on('close', (code) => {
  scan('\n');
  const failed = Math.max(total - passed, code === 0 ? 0 : 1);
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
