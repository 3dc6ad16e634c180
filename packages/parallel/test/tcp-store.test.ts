// The node store on loopback: set/get (a get waits for its key), add, barrier, control messages both ways,
// timeouts as typed errors, and a connection that sends garbage closed without harming the server.
import { createConnection } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, ConfigError } from '@zinfer/core';
import { barrier, nodeOptions, TcpStoreClient, TcpStoreServer, type Hello } from '../src/index.js';
import { freePort } from './workers/nodes.js';

async function rejects(f: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await f();
  } catch (e) {
    assert.instance(e, BackendError);
    return assert.match((e as Error).message, re);
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

const hello = (node: number): Hello => ({ node, worldSize: 3, devices: 0, host: 'test' });

async function serve(onBadPeer?: (e: BackendError) => void) {
  const server = await TcpStoreServer.listen({ port: 0, host: '127.0.0.1', admit: (h) => (h.node === 9 ? 'no node 9 here' : null), onBadPeer });
  const connect = (node: number, timeoutMs = 2000) => TcpStoreClient.connect({ addr: '127.0.0.1', port: server.port, hello: hello(node), timeoutMs });
  return { server, connect };
}

test('set/get/add across clients and the local store; a get waits for its key; Maps, typed arrays and bigints survive', async () => {
  const { server, connect } = await serve();
  const [a, b] = [await connect(1), await connect(2)];
  const later = b.get('k');
  await a.set('k', new Map<string, unknown>([['x', Float32Array.of(1.5, -2)], ['y', 2n ** 70n]]));
  const v = (await later) as Map<string, unknown>;
  assert.equal([...(v.get('x') as Float32Array)], [1.5, -2]);
  assert.is(v.get('y'), 2n ** 70n);
  assert.is(await a.add('n', 2), 2);
  assert.is(await server.store.add('n', 3), 5);
  assert.is(await b.get('n'), 5);
  await b.delete('n');
  await server.store.set('n', 'x');
  await rejects(() => a.add('n', 1), /not a counter/);
  a.close();
  b.close();
  await server.close();
});

test('a barrier returns once every node arrived; a barrier missing a node times out naming it', async () => {
  const { server, connect } = await serve();
  const [a, b] = [await connect(1), await connect(2)];
  await Promise.all([barrier(server.store, 'start', 3), barrier(a, 'start', 3), barrier(b, 'start', 3)]);
  const t0 = Date.now();
  try {
    await barrier(a, 'again', 2, 300);
    assert.unreachable('expected a timeout');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, /barrier "again": 2 nodes did not all arrive within 300 ms/);
  }
  assert.ok(Date.now() - t0 < 2000);
  a.close();
  b.close();
  await server.close();
});

test('control messages both ways; a refused hello and an unreachable leader are typed errors naming the node', async () => {
  const { server, connect } = await serve();
  const peer = new Promise<{ send(b: unknown): void; on(e: 'message', f: (b: unknown) => void): unknown }>((resolve) => server.once('peer', resolve));
  const a = await connect(1);
  const p = await peer;
  const got = new Promise((resolve) => p.on('message', resolve));
  a.send({ hi: [1, 2] });
  assert.equal(await got, { hi: [1, 2] });
  const back = new Promise((resolve) => a.on('message', resolve));
  p.send('welcome back');
  assert.is(await back, 'welcome back');
  await rejects(() => connect(9), /refused node 9: no node 9 here/);
  const port = await freePort();
  try {
    await TcpStoreClient.connect({ addr: '127.0.0.1', port, hello: hello(2), timeoutMs: 500 });
    assert.unreachable('expected an error');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, `node 2 could not reach the leader (RANK 0) at MASTER_ADDR:MASTER_PORT 127.0.0.1:${port} within 0.5 s`);
  }
  a.close();
  await server.close();
});

test('garbage and oversized frames close that connection with a BackendError; the server goes on', async () => {
  const bad: BackendError[] = [];
  const { server, connect } = await serve((e) => bad.push(e));
  for (const bytes of [Buffer.from([0, 0, 0, 3, 1, 2, 3]), Buffer.from([0xff, 0xff, 0xff, 0xff])]) {
    const s = createConnection({ host: '127.0.0.1', port: server.port });
    await new Promise((resolve) => s.on('connect', resolve));
    s.resume(); // the leader speaks first (its challenge): read it, or the socket never reaches 'close'
    s.write(bytes);
    await new Promise((resolve) => s.on('close', resolve));
  }
  assert.is(bad.length, 2);
  assert.ok(bad.every((e) => e instanceof BackendError));
  assert.match(bad[0].message, /bad frame .*not a serialized message/);
  assert.match(bad[1].message, /bad frame .*4294967295 bytes/);
  const a = await connect(1);
  await a.set('still', 'serving');
  assert.is(await server.store.get('still'), 'serving');
  a.close();
  await server.close();
});

test('node settings: flags win over the environment; bad values are ConfigErrors naming the variable or flag', () => {
  assert.is(nodeOptions({}, {}), null);
  assert.equal(nodeOptions({}, { WORLD_SIZE: '2', RANK: '1', MASTER_ADDR: '10.1.2.3', MASTER_PORT: '1234' }), { worldSize: 2, rank: 1, masterAddr: '10.1.2.3', masterPort: 1234, token: null });
  assert.equal(nodeOptions({ nnodes: 3, nodeRank: 2, masterPort: 99 }, { WORLD_SIZE: '2', RANK: '1' }), { worldSize: 3, rank: 2, masterAddr: '127.0.0.1', masterPort: 99, token: null });
  for (const [flags, env, field] of [
    [{}, { WORLD_SIZE: 'two' }, 'WORLD_SIZE'],
    [{}, { WORLD_SIZE: '2', RANK: '-1' }, 'RANK'],
    [{}, { WORLD_SIZE: '2', RANK: '2' }, 'RANK'],
    [{ nodeRank: 5 }, { WORLD_SIZE: '2' }, '--node-rank'],
    [{}, { WORLD_SIZE: '2', MASTER_PORT: '70000' }, 'MASTER_PORT'],
    [{}, { WORLD_SIZE: '2', MASTER_PORT: '80a' }, 'MASTER_PORT'],
    [{ nodeRank: 1 }, {}, '--node-rank'],
    [{}, { WORLD_SIZE: '2', ZINFER_NODE_TOKEN: 'short' }, 'ZINFER_NODE_TOKEN'],
  ] as const) {
    try {
      nodeOptions(flags, env);
      assert.unreachable(`expected a ConfigError for ${JSON.stringify(env)}`);
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, field);
    }
  }
});

test.run();
