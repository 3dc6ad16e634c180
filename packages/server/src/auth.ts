// The optional API key. HTTP sends `Authorization: Bearer KEY`; a WebSocket may send the same header
// (Node clients) or, since browsers cannot set headers on a WebSocket, offer the subprotocol
// `zinfer.auth.<base64url(KEY)>` next to its encoding subprotocol. Keys compare in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AUTH_PROTOCOL_PREFIX } from './ws-protocol.js';

export function checkApiKey(key: string | undefined, req: IncomingMessage, protocols: ReadonlySet<string> = new Set()): boolean {
  if (key === undefined) return true;
  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
  if (bearer !== undefined && same(bearer, key)) return true;
  for (const p of protocols) {
    if (p.startsWith(AUTH_PROTOCOL_PREFIX) && same(Buffer.from(p.slice(AUTH_PROTOCOL_PREFIX.length), 'base64url').toString('utf8'), key)) return true;
  }
  return false;
}

/** Subprotocols a handshake offered (the Sec-WebSocket-Protocol header, comma-separated). */
export function offeredProtocols(req: IncomingMessage): Set<string> {
  const raw = req.headers['sec-websocket-protocol'];
  return new Set((raw ?? '').split(',').map((s) => s.trim()).filter(Boolean));
}

// Hashing first gives equal-length buffers, so timingSafeEqual never leaks the key's length either.
function same(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}
