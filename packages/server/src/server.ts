// startServer(): one Node HTTP server for everything: the playground page (/), /health, /metrics, the
// OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions) and the WebSocket endpoint
// (/v1/ws). It listens before the engine has loaded, so /health can answer 503 while it loads.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Engine } from '@zinfer/core';
import { checkApiKey } from './auth.js';
import { readJsonBody, sendError, sendJson } from './http-io.js';
import { ServerMetrics } from './metrics.js';
import { REPLAN_PATH, replanRoute } from './moe-replan.js';
import { chatCompletions } from './openai-chat.js';
import { completions } from './openai-completions.js';
import type { OpenAiHandler } from './openai-run.js';
import { servePlayground } from './playground.js';
import { ServeContext } from './serve-context.js';
import { AuthError, NotFoundError, NotReadyError } from './server-errors.js';
import { resolveOptions, type ServerOptions } from './server-options.js';
import { WsEndpoint } from './ws-endpoint.js';
import { WS_PATH } from './ws-protocol.js';

export interface ZinferServer {
  /** http://host:port (the playground). */
  readonly url: string;
  /** ws://host:port/v1/ws */
  readonly wsUrl: string;
  /** http://host:port/v1 (an OpenAI client's baseURL). */
  readonly openaiUrl: string;
  readonly port: number;
  /** Resolves with the engine once it has loaded (rejects when loading failed). */
  readonly ready: Promise<Engine>;
  readonly metrics: ServerMetrics;
  /** Stops listening, closes every connection and cancels their requests. The engine stays open: it is the caller's. */
  close(): Promise<void>;
}

const POST_ROUTES: Record<string, { handler: OpenAiHandler; api: 'completions' | 'chat' }> = {
  '/v1/completions': { handler: completions, api: 'completions' },
  '/v1/chat/completions': { handler: chatCompletions, api: 'chat' },
};

export async function startServer(options: ServerOptions): Promise<ZinferServer> {
  const opts = resolveOptions(options);
  const metrics = new ServerMetrics(options.moe);
  const ctx = new ServeContext(opts, metrics);
  const ws = new WsEndpoint(ctx);
  const ready = Promise.resolve(options.engine).then((engine) => {
    ctx.engine = engine;
    metrics.attach(engine);
    return engine;
  });
  ready.catch(() => {}); // surfaced by /health and to whoever awaits `ready`
  let loadError: unknown = null;
  ready.catch((e: unknown) => (loadError = e));

  const server: Server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => sendError(res, e));
  });
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://x').pathname !== WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    ws.handleUpgrade(req, socket, head);
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const method = req.method ?? 'GET';
    if (path === '/' && method === 'GET') return servePlayground(res);
    if (path === '/health') {
      if (loadError) return sendJson(res, 500, { status: 'failed', error: String(loadError) });
      return ctx.ready ? sendJson(res, 200, { status: 'ok', model: opts.modelName }) : sendJson(res, 503, { status: 'loading' });
    }
    if (path === '/metrics') {
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { 'content-type': contentType });
      return void res.end(body);
    }
    if (path === REPLAN_PATH) return replanRoute(ctx, options.moe, req, res);
    if (!path.startsWith('/v1/')) throw new NotFoundError(`no route ${method} ${path}`, { field: 'path', expected: `/, /health, /metrics, ${REPLAN_PATH}, /v1/...`, found: path });
    if (!checkApiKey(opts.apiKey, req)) throw new AuthError();
    if (path === '/v1/models') {
      if (method !== 'GET') throw new NotFoundError(`use GET ${path}`, { field: 'method', expected: 'GET', found: method }, 405);
      return sendJson(res, 200, { object: 'list', data: [{ id: opts.modelName, object: 'model', created: 0, owned_by: 'zinfer' }] });
    }
    const post = POST_ROUTES[path];
    if (!post) throw new NotFoundError(`no route ${method} ${path}`, { field: 'path', expected: Object.keys(POST_ROUTES).join(', ') + ', /v1/models', found: path });
    if (method !== 'POST') throw new NotFoundError(`use POST ${path}`, { field: 'method', expected: 'POST', found: method }, 405);
    if (!ctx.ready) throw new NotReadyError();
    try {
      const body = await readJsonBody(req, opts.limits.maxPayloadBytes);
      await post.handler(ctx, req, res, body);
    } catch (e) {
      metrics.errors.inc({ api: post.api, code: sendError(res, e) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}/`,
    wsUrl: `ws://${host}:${port}${WS_PATH}`,
    openaiUrl: `http://${host}:${port}/v1`,
    port,
    ready,
    metrics,
    async close() {
      await ws.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
