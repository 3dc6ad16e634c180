// The offload file went wrong under a running engine: a short read, or the file was changed, replaced or
// removed after place() wrote it. Streaming on would compute with wrong weights, so the step fails instead.
import { ZinferError, type ErrorDetails } from '@zinfer/core';

export class OffloadFileError extends ZinferError {
  /** The stream group (layer order) whose read failed. */
  readonly group: number;
  constructor(message: string, group: number, details: ErrorDetails & { file: string }) {
    super('E_OFFLOAD_FILE', `${message} (group ${group})`, details);
    this.group = group;
  }
}
