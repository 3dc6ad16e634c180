// A follower node process (RANK ≠ 0): joins the leader's store at MASTER_ADDR:MASTER_PORT, then starts the
// ranks of each launch the leader sends and relays their messages, launch after launch (an engine on the
// leader may be closed and made again). It returns when the leader's connection closes: 0 when no launch
// was running, 1 when the leader went away in the middle of one.
import { hostname } from 'node:os';
import { cudaDeviceCount } from '../nccl/cuda-context.js';
import { leaderAddress, type NodeOptions } from './env.js';
import { FollowerLaunch } from './follower-launch.js';
import type { ToFollower } from './messages.js';
import { TcpStoreClient } from './tcp-store.js';

export interface FollowerOptions {
  nodes: NodeOptions;
  /** This node's copy of the model directory, when it is not at the leader's path. */
  modelDir?: string;
  /** Progress lines (joined, launches, why it stops); default: none. */
  log?: (line: string) => void;
}

export async function runFollower(o: FollowerOptions): Promise<number> {
  const { rank, worldSize } = o.nodes;
  const log = o.log ?? (() => {});
  const where = leaderAddress(o.nodes);
  log(`zinfer node ${rank} of ${worldSize}: joining the leader at ${where} (waiting up to ${(o.nodes.joinTimeoutMs ?? 60_000) / 1000} s)`);
  const client = await TcpStoreClient.connect({
    addr: o.nodes.masterAddr, port: o.nodes.masterPort, timeoutMs: o.nodes.joinTimeoutMs, heartbeatTimeoutMs: o.nodes.heartbeatTimeoutMs, token: o.nodes.token,
    hello: { node: rank, worldSize, devices: visibleDevices(), host: hostname() },
  });
  log(`zinfer node ${rank} of ${worldSize}: joined the leader at ${where}`);
  let current: FollowerLaunch | null = null;
  return new Promise((resolve) => {
    client.on('message', (body) => {
      const m = body as ToFollower;
      if (m.type === 'launch') {
        void current?.kill(); // the leader started again: what is left of its last launch is stale
        const launch = new FollowerLaunch(m, (r) => client.send(r), o.modelDir);
        current = launch;
        log(`zinfer node ${rank}: launch ${m.launch}, ranks ${m.inits.map((i) => i.rank).join(', ')}`);
        void launch.done.then(() => log(`zinfer node ${rank}: launch ${m.launch} ended`));
      } else if (current?.id === m.launch) {
        current.handle(m);
      }
    });
    client.on('close', (why) => {
      const active = current?.active ?? false;
      log(`zinfer node ${rank}: ${why?.message ?? 'the connection was closed'}${active ? ' during a launch: stopping its ranks' : ''}; exiting`);
      void (current?.kill() ?? Promise.resolve()).then(() => resolve(active ? 1 : 0));
    });
  });
}

/** CUDA devices this process sees, for the leader's per-node device check; 0 where there is no driver. */
function visibleDevices(): number {
  try {
    return cudaDeviceCount();
  } catch {
    return 0;
  }
}
