// Frame encodings: JSON text frames, or MessagePack binary frames (plain maps, no msgpackr record
// extension, so any MessagePack library can read them). Shared by the server and the client.
import { Packr } from 'msgpackr';
import type { Encoding } from './ws-protocol.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export function encodeFrame(encoding: Encoding, event: unknown): string | Uint8Array {
  return encoding === 'json' ? JSON.stringify(event) : packr.pack(event);
}

/** Decodes a frame; throws on malformed data (the caller reports it). */
export function decodeFrame(encoding: Encoding, data: string | Uint8Array): unknown {
  if (encoding === 'json') return JSON.parse(typeof data === 'string' ? data : new TextDecoder('utf-8', { fatal: true }).decode(data));
  return packr.unpack(typeof data === 'string' ? new TextEncoder().encode(data) : data);
}
