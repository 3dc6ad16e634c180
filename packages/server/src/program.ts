// The `zinfer` command tree and runCli(), which parses argv, runs the command and returns the exit code
// instead of exiting, so the CLI can be embedded and tested in-process.
import { Command, CommanderError } from 'commander';
import pkg from '../package.json';
import { EXIT_OK, EXIT_USAGE, exitCodeOf, formatError, oneLine } from './cli-errors.js';
import { processIo, type CliIo } from './cli-io.js';
import { benchCommand } from './bench-command.js';
import { generateCommand } from './generate-command.js';
import { serveCommand } from './serve-command.js';

export async function runCli(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let code = EXIT_OK;
  const program = new Command('zinfer')
    .description('zinfer: transformer inference from TypeScript')
    .version(pkg.version)
    .addCommand(generateCommand(io, (c) => (code = c)))
    .addCommand(serveCommand(io, (c) => (code = c)))
    .addCommand(benchCommand(io, (c) => (code = c)));
  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride().configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // commander writes "error: ..." with a suggestion on a second line; the contract is one `zinfer:` line.
      outputError: (s, write) => write(`zinfer: ${oneLine(s.replace(/^error:\s*/, ''))}\n`),
    });
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    // commander already printed its message (or the help / version it was asked for).
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    const flags = new Set(program.commands.flatMap((c) => c.options.map((o) => o.long ?? '')));
    io.stderr.write(`${formatError(e, flags)}\n`);
    return exitCodeOf(e);
  }
}
