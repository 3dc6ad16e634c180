// The streams a CLI run writes to; process.stdout/stderr by default, any writable in tests or embedders.

export interface CliIo {
  stdout: NodeJS.WritableStream;
  /** isTTY decides whether a progress bar is drawn. */
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr };
}
