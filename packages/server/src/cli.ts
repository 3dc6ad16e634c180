#!/usr/bin/env node
// The `zinfer` bin. exitCode rather than process.exit(), so buffered stdout (a large --json) is flushed.
import { runCli } from './program.js';

// `zinfer generate ... | head`: the reader is gone and nothing more can be shown, so stop quietly as Unix
// tools do, instead of crashing on the asynchronous EPIPE 'error' event.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  process.stderr.write(`zinfer: cannot write to stdout: ${e.message}\n`);
  process.exit(1);
});

void runCli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
