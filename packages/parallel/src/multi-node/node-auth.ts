// Proof that both ends of a node connection hold the run's shared secret (ZINFER_NODE_TOKEN), both ways:
// the leader starts a connection with a random challenge, the follower's hello answers it and brings its
// own, the leader's welcome answers that. A follower must know the token to receive steps; a leader must
// know it before a follower imports the backend modules its launches name. Answers are HMAC-SHA256 of the
// other side's nonce with the side's role in the message (an answer is never valid for the other role),
// compared in constant time. The frames themselves are not encrypted: activations cross the network in
// the clear, so a run across machines belongs on a private network (or inside a tunnel).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const NODE_TOKEN_ENV = 'ZINFER_NODE_TOKEN';
/** Fewer characters than this is a ConfigError: a short shared secret is guessed, not proven. */
export const NODE_TOKEN_MIN_LENGTH = 16;

export type NodeRole = 'leader' | 'follower';

/** 256 bits in hex: the shape of a nonce and of an answer. */
const isHex256 = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
export const isNonce = isHex256;

/** A fresh challenge: 32 random bytes, hex. */
export const newNonce = (): string => randomBytes(32).toString('hex');

/** The answer `role` gives to the other side's `nonce`. */
export function nodeProof(token: string, role: NodeRole, nonce: string): string {
  return createHmac('sha256', token).update(`zinfer node ${role}:${nonce}`).digest('hex');
}

/** Whether `given` is the answer `role` owes to `nonce` under `token`. */
export function verifyNodeProof(token: string, role: NodeRole, nonce: string, given: unknown): boolean {
  if (!isHex256(given)) return false;
  return timingSafeEqual(Buffer.from(nodeProof(token, role, nonce), 'hex'), Buffer.from(given, 'hex'));
}

/**
 * Why the side holding `token` (or none) refuses the other side's answer `given` to `nonce`, or null to
 * accept: both sides must run with the same token, or both without.
 */
export function authRefusal(token: string | null, role: NodeRole, nonce: string, given: unknown, who: string): string | null {
  if (token === null) return given === undefined || given === null ? null : `${who} proves a ${NODE_TOKEN_ENV} but this side runs without one: set the same token on every node`;
  if (given === undefined || given === null) return `${who} runs without ${NODE_TOKEN_ENV}, which this side requires`;
  return verifyNodeProof(token, role, nonce, given) ? null : `${who} holds another ${NODE_TOKEN_ENV}`;
}

