// The WebSocket endpoint on the HTTP server's upgrade event: picks the frame encoding from the offered
// subprotocols, checks the API key (close 1008 when wrong or missing), refuses while the model loads
// (close 1013), and keeps connections alive with ping/pong (a client that misses a pong is dropped).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { checkApiKey, offeredProtocols } from './auth.js';
import type { ServeContext } from './serve-context.js';
import { CLOSE, JSON_PROTOCOL, MSGPACK_PROTOCOL, type Encoding } from './ws-protocol.js';
import { WsSession } from './ws-session.js';

// ws cuts off (close 1009) frames beyond this; frames between maxPayloadBytes and this get an `error`
// event instead, so an oversized message costs the client one request, not its connection.
const HARD_PAYLOAD_FACTOR = 4;

export class WsEndpoint {
  private readonly wss: WebSocketServer;
  private readonly alive = new WeakMap<WebSocket, boolean>();
  private readonly heartbeat: ReturnType<typeof setInterval> | null;

  constructor(private readonly ctx: ServeContext) {
    const { limits } = ctx.options;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: limits.maxPayloadBytes * HARD_PAYLOAD_FACTOR,
      // Text frames are decoded (strictly) by the session, so invalid UTF-8 costs an `error` event, not
      // the connection (ws would close it with 1007).
      skipUTF8Validation: true,
      // Without this, a client offering only an unknown subprotocol would get one it did not ask for.
      handleProtocols: (offered) => (offered.has(MSGPACK_PROTOCOL) ? MSGPACK_PROTOCOL : offered.has(JSON_PROTOCOL) ? JSON_PROTOCOL : false),
    });
    this.heartbeat = limits.heartbeatMs > 0 ? setInterval(() => this.ping(), limits.heartbeatMs) : null;
    this.heartbeat?.unref();
  }

  get connections(): number {
    return this.wss.clients.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const protocols = offeredProtocols(req);
    const authorized = checkApiKey(this.ctx.options.apiKey, req, protocols);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      // Accept, then close with a code: a browser sees close codes, not the status of a refused handshake.
      if (!authorized) return ws.close(CLOSE.unauthorized, 'missing or wrong API key');
      if (!this.ctx.ready) return ws.close(CLOSE.tryAgainLater, 'the model is still loading: retry when /health answers 200');
      const encoding: Encoding = ws.protocol === MSGPACK_PROTOCOL ? 'msgpack' : 'json';
      this.alive.set(ws, true);
      ws.on('pong', () => this.alive.set(ws, true));
      ws.on('error', () => ws.terminate()); // protocol errors (e.g. a frame over the hard cap): ws closes; nothing to report
      this.ctx.metrics.connections.inc();
      ws.on('close', () => this.ctx.metrics.connections.dec());
      new WsSession(ws, this.ctx, encoding);
    });
  }

  /** Closes every connection (1001 going away), dropping those that do not answer within graceMs. */
  async close(graceMs = 1000): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    const open = [...this.wss.clients];
    await Promise.all(open.map((ws) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => ws.terminate(), graceMs);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.close(CLOSE.goingAway, 'the server is shutting down');
    })));
    this.wss.close();
  }

  private ping(): void {
    for (const ws of this.wss.clients) {
      if (this.alive.get(ws) === false) {
        ws.close(CLOSE.heartbeatTimeout, 'no pong to the last ping');
        ws.terminate();
        continue;
      }
      this.alive.set(ws, false);
      ws.ping();
    }
  }
}
