// A follower node process for the multi-node tests: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the
// environment, short join and heartbeat timeouts, its lines on stderr.
import { nodeOptions, runFollower } from '../../src/index.js';

const nodes = nodeOptions()!;
runFollower({ nodes: { ...nodes, joinTimeoutMs: 30_000, heartbeatTimeoutMs: 3000 }, log: (line) => process.stderr.write(`${line}\n`) }).then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`follower: ${e.message}\n`);
    process.exit(1);
  },
);
