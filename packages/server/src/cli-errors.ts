// How the CLI reports failures: one line on stderr, `zinfer: <message>`, and an exit code that tells a
// wrong command line (2) from a request, model or runtime failure (1).
import { ZinferError, type ErrorDetails } from '@zinfer/core';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, the shell convention for a run stopped by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** The command line is wrong in a way commander cannot see (flag combinations). */
export class UsageError extends ZinferError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('E_USAGE', message, details);
  }
}

/**
 * The one-line message for an error. Engine errors name snake_case fields (top_p); when such a field is a
 * flag of the CLI (--top-p), the flag is put in front so the user sees what to change on the command line.
 */
export function formatError(e: unknown, flags: ReadonlySet<string>): string {
  if (!(e instanceof Error)) return `zinfer: ${oneLine(String(e))}`;
  if (!(e instanceof ZinferError)) return `zinfer: internal error: ${oneLine(e.message)}\n${e.stack ?? ''}`;
  const flag = e.info.field === undefined ? undefined : `--${e.info.field.replaceAll('_', '-')}`;
  const prefix = flag !== undefined && flags.has(flag) ? `${flag}: ` : '';
  return `zinfer: ${prefix}${oneLine(e.message)}`;
}

export function exitCodeOf(e: unknown): number {
  return e instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
}

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
