// `zinfer generate` / `zinfer serve` on a node other than 0 (--node-rank or RANK ≠ 0 with --nnodes or
// WORLD_SIZE > 1): the same command line runs on every node, as with torchrun; node 0 runs the engine and
// the server, every other node joins it and serves its ranks until node 0's process ends.
import { runFollower } from '@zinfer/parallel';
import { resolve } from 'node:path';
import type { CliIo } from './cli-io.js';
import { nodesFromFlags, type ParallelFlags } from './parallel-flags.js';

/** The follower's exit code when these flags make this process a follower node, else null (go on as node 0). */
export async function runIfFollower(o: ParallelFlags & { model?: string }, io: CliIo): Promise<number | null> {
  const nodes = nodesFromFlags(o);
  if (!nodes || nodes.rank === 0) return null;
  // The ranks read the model from this node's --model when given (the leader's path otherwise).
  return runFollower({ nodes, ...(o.model ? { modelDir: resolve(o.model) } : {}), log: (line) => io.stderr.write(`${line}\n`) });
}
