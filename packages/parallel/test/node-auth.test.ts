// The node connection's shared secret (ZINFER_NODE_TOKEN) on loopback: the same token on both sides joins;
// a wrong or missing token on either side is refused with a BackendError naming the variable, and the
// leader goes on serving the nodes that hold it; a follower does not trust a leader that cannot answer its
// challenge (it would run the modules that leader's launches name).
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError } from '@zinfer/core';
import { NODE_TOKEN_ENV, nodeOptions, TcpStoreClient, TcpStoreServer, type Hello } from '../src/index.js';
import { FramedConnection } from '../src/multi-node/frames.js';
import { newNonce } from '../src/multi-node/node-auth.js';

const TOKEN = 'a3f1c9e07b5d4e2a9c1b7f30d8e6a4c2';
const OTHER = 'ffffffffffffffffffffffffffffffff';
const hello = (node: number): Hello => ({ node, worldSize: 3, devices: 0, host: 'test' });

async function refusal(f: () => Promise<unknown>, re: RegExp): Promise<BackendError> {
  try {
    await f();
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, re);
    assert.is((e as BackendError).info.field, NODE_TOKEN_ENV);
    return e as BackendError;
  }
  throw new Error(`expected a refusal matching ${re}`);
}

async function leader(token: string | null) {
  const bad: BackendError[] = [];
  const server = await TcpStoreServer.listen({ port: 0, host: '127.0.0.1', token, admit: () => null, onBadPeer: (e) => bad.push(e) });
  const connect = (node: number, t: string | null) => TcpStoreClient.connect({ addr: '127.0.0.1', port: server.port, hello: hello(node), token: t, timeoutMs: 2000 });
  return { server, connect, bad };
}

test('the same token on both sides joins and serves; another token, or none, is refused and the leader serves on', async () => {
  const { server, connect, bad } = await leader(TOKEN);
  const a = await connect(1, TOKEN);
  await a.set('k', 1);
  await refusal(() => connect(2, OTHER), /refused node 2: node 2 holds another ZINFER_NODE_TOKEN/);
  await refusal(() => connect(2, null), /node 2 runs without ZINFER_NODE_TOKEN, which this side requires/);
  assert.is(bad.length, 2, 'both refusals reported on the leader');
  assert.ok(bad.every((e) => e.info.field === NODE_TOKEN_ENV));
  const b = await connect(2, TOKEN);
  assert.is(await b.get('k'), 1, 'the leader still serves');
  a.close();
  b.close();
  await server.close();
});

test('a follower with a token is refused by a leader without one (the settings must match)', async () => {
  const { server, connect } = await leader(null);
  await refusal(() => connect(1, TOKEN), /node 1 proves a ZINFER_NODE_TOKEN but this side runs without one/);
  const plain = await connect(1, null);
  plain.close();
  await server.close();
});

test('a follower does not trust a leader that cannot answer its challenge', async () => {
  // A stand-in leader that welcomes everyone with a made-up answer.
  const fake = createServer((socket) => {
    const conn = new FramedConnection(socket, 'a follower');
    conn.send({ t: 'challenge', nonce: newNonce() });
    conn.on('frame', (f) => f.t === 'hello' && conn.send({ t: 'welcome', proof: '0'.repeat(64) }));
  });
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  const port = (fake.address() as AddressInfo).port;
  await refusal(() => TcpStoreClient.connect({ addr: '127.0.0.1', port, hello: hello(1), token: TOKEN, timeoutMs: 2000 }), /node 1 does not trust the leader at 127\.0\.0\.1:\d+: the leader holds another ZINFER_NODE_TOKEN/);
  await refusal(() => TcpStoreClient.connect({ addr: '127.0.0.1', port, hello: hello(1), token: null, timeoutMs: 2000 }), /the leader proves a ZINFER_NODE_TOKEN but this side runs without one/);
  fake.close();
});

test('nodeOptions reads the token from the environment only', () => {
  assert.is(nodeOptions({}, { WORLD_SIZE: '2', [NODE_TOKEN_ENV]: TOKEN })?.token, TOKEN);
  assert.is(nodeOptions({}, { WORLD_SIZE: '2' })?.token, null);
});

test.run();
