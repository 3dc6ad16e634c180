// A follower's way into the leader's store: reach MASTER_ADDR:MASTER_PORT (retrying while the leader is
// not up yet), then the handshake — the leader's challenge, this node's hello with its answer and its
// own challenge, the leader's welcome (or refusal) with its answer (node-auth.ts).
import { createConnection, type Socket } from 'node:net';
import { BackendError } from '@zinfer/core';
import type { FramedConnection, Frame } from './frames.js';
import { authRefusal, isNonce, newNonce, nodeProof, NODE_TOKEN_ENV } from './node-auth.js';
import type { Hello } from './tcp-store.js';

/**
 * Runs the handshake on a fresh connection; returns the frames that came in behind the welcome (the
 * leader may send at once). A refusal, an untrusted leader or a closed connection rejects with a
 * BackendError, the connection closed.
 */
export async function joinLeader(conn: FramedConnection, hello: Hello, token: string | null, where: string): Promise<Frame[]> {
  const early: Frame[] = [];
  const frames: Frame[] = []; // the challenge, then the welcome or refusal
  let wake = () => {};
  const collect = (f: Frame) => {
    (frames.length >= 2 || (frames.length === 1 && f.t !== 'welcome' && f.t !== 'refused') ? early : frames).push(f);
    wake();
  };
  conn.on('frame', collect);
  const closed = new Promise<never>((_, reject) => conn.once('close', (why) => reject(why ?? new BackendError(`the leader at ${where} closed the connection`))));
  closed.catch(() => {});
  const nth = (n: number) => Promise.race([closed, new Promise<Frame>((resolve) => {
    wake = () => frames.length > n && resolve(frames[n]);
    wake();
  })]);
  try {
    const challenge = await nth(0);
    if (challenge.t !== 'challenge' || !isNonce(challenge.nonce)) throw new BackendError(`the leader at ${where} did not open with a challenge (a '${challenge.t}' frame): not a zinfer node 0 of this version`);
    const nonce = newNonce();
    conn.send({ t: 'hello', hello, nonce, proof: token === null ? null : nodeProof(token, 'follower', challenge.nonce) });
    const answer = await nth(1);
    if (answer.t !== 'welcome') throw new BackendError(`the leader at ${where} refused node ${hello.node}: ${String(answer.reason)}`, { field: typeof answer.field === 'string' ? answer.field : 'RANK', found: String(hello.node) });
    const refused = authRefusal(token, 'leader', nonce, answer.proof, 'the leader');
    if (refused) throw new BackendError(`node ${hello.node} does not trust the leader at ${where}: ${refused}`, { field: NODE_TOKEN_ENV });
    return early;
  } catch (e) {
    conn.close();
    throw e;
  } finally {
    conn.off('frame', collect);
  }
}

/** Connects, retrying refused or failed attempts every 200 ms until the deadline (the leader may start later). */
export function connectWithRetry(addr: string, port: number, deadline: number, message: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = createConnection({ host: addr, port });
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e) => {
        s.destroy();
        if (Date.now() + 200 > deadline) reject(new BackendError(`${message} (${e.message})`, { field: 'MASTER_ADDR', expected: `a leader listening at ${addr}:${port}`, found: e.message }));
        else setTimeout(attempt, 200);
      });
    };
    attempt();
  });
}

