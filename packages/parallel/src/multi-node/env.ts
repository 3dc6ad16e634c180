// Where this process sits among the node processes of a multi-node run, in torchrun's words: WORLD_SIZE
// node processes, this one is RANK, and RANK 0 listens on MASTER_ADDR:MASTER_PORT. Flags (--nnodes,
// --node-rank, --master-addr, --master-port) win over the environment; a bad value is a ConfigError naming
// the variable or flag it came from. The run's shared secret comes from ZINFER_NODE_TOKEN only.
import { ConfigError } from '@zinfer/core';
import { NODE_TOKEN_ENV, NODE_TOKEN_MIN_LENGTH } from './node-auth.js';

export interface NodeOptions {
  /** Node processes in the run (WORLD_SIZE). */
  worldSize: number;
  /** This process's index (RANK); 0 is the leader, which runs the engine. */
  rank: number;
  /** Where the leader listens (MASTER_ADDR, default 127.0.0.1) and its port (MASTER_PORT, default 29500). */
  masterAddr: string;
  masterPort: number;
  /** How long nodes wait for each other to join (default 60 000 ms). */
  joinTimeoutMs?: number;
  /** A node connection silent for this long is taken as a dead or hung node (default 10 000 ms). */
  heartbeatTimeoutMs?: number;
  /**
   * The run's shared secret (ZINFER_NODE_TOKEN; environment only, so it stays out of process listings):
   * every node proves it to the other end of its connection (node-auth.ts). Null: no proof, trusted
   * networks only.
   */
  token?: string | null;
}

/** The same four settings as CLI flags; undefined: take the environment's. */
export interface NodeFlags {
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
}

export const DEFAULT_MASTER_ADDR = '127.0.0.1';
export const DEFAULT_MASTER_PORT = 29500;

/** The node settings from flags and environment, or null when this is a single-node run (WORLD_SIZE unset or 1). */
export function nodeOptions(flags: NodeFlags = {}, env: NodeJS.ProcessEnv = process.env): NodeOptions | null {
  const worldSize = flags.nnodes ?? integer(env, 'WORLD_SIZE', 1, 1);
  if (worldSize <= 1) {
    if (flags.nodeRank !== undefined && flags.nodeRank !== 0) throw new ConfigError('a node rank needs several nodes', { field: '--node-rank', expected: `0 with --nnodes ${worldSize}`, found: String(flags.nodeRank) });
    return null;
  }
  const rank = flags.nodeRank ?? integer(env, 'RANK', 0, 0);
  const from = flags.nodeRank !== undefined ? '--node-rank' : 'RANK';
  if (rank >= worldSize) throw new ConfigError(`node rank ${rank} is outside a run of ${worldSize} nodes`, { field: from, expected: `0..${worldSize - 1} (WORLD_SIZE / --nnodes ${worldSize})`, found: String(rank) });
  const masterAddr = flags.masterAddr ?? env.MASTER_ADDR ?? DEFAULT_MASTER_ADDR;
  if (masterAddr.trim() === '') throw new ConfigError('empty leader address', { field: flags.masterAddr !== undefined ? '--master-addr' : 'MASTER_ADDR', expected: 'a host name or IP address', found: '""' });
  const masterPort = flags.masterPort ?? integer(env, 'MASTER_PORT', DEFAULT_MASTER_PORT, 1);
  if (masterPort > 65535) throw new ConfigError('leader port out of range', { field: flags.masterPort !== undefined ? '--master-port' : 'MASTER_PORT', expected: 'a port in 1..65535', found: String(masterPort) });
  return { worldSize, rank, masterAddr, masterPort, token: nodeToken(env) };
}

/** ZINFER_NODE_TOKEN, or null when unset; a set but short token is a ConfigError. */
export function nodeToken(env: NodeJS.ProcessEnv = process.env): string | null {
  const raw = env[NODE_TOKEN_ENV];
  if (raw === undefined) return null;
  if (raw.length < NODE_TOKEN_MIN_LENGTH) {
    throw new ConfigError(`${NODE_TOKEN_ENV} is too short to be a secret`, { field: NODE_TOKEN_ENV, expected: `at least ${NODE_TOKEN_MIN_LENGTH} characters (e.g. openssl rand -hex 32)`, found: `${raw.length} characters` });
  }
  return raw;
}

/** An integer ≥ min from env[name], or `fallback` when unset. */
function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min) throw new ConfigError(`invalid ${name} in the environment`, { field: name, expected: `an integer ≥ ${min}`, found: JSON.stringify(raw) });
  return n;
}

/** "ADDR:PORT" for messages. */
export function leaderAddress(o: Pick<NodeOptions, 'masterAddr' | 'masterPort'>): string {
  return `${o.masterAddr}:${o.masterPort}`;
}
