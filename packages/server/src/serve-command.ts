// `zinfer serve`: the HTTP + WebSocket server over one engine. With no --model it serves the embedded
// default model. It listens first (so /health answers 503 while weights load), prints its URLs, then
// serves until SIGINT or SIGTERM, when it closes connections and the engine and exits 0.
import { basename, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { createEngine, type EngineLimits, type FloatDType } from '@zinfer/core';
import { AVAILABLE_BACKENDS, BACKEND_NAMES, createBackend } from './backends.js';
import { EXIT_OK } from './cli-errors.js';
import type { CliIo } from './cli-io.js';
import { DEFAULT_MODEL_NAME, defaultModelDir } from './default-model.js';
import { checkModelDir } from './generate-command.js';
import { offloadFromFlags, offloadOptions, offloadSummary, type OffloadFlags } from './offload-flags.js';
import { replannerFromFlags } from './moe-replan.js';
import { parallelFromFlags, parallelOptions, type ParallelFlags } from './parallel-flags.js';
import { orAuto, parseBytes, parseCount, parseInteger } from './parse-flags.js';
import { runIfFollower } from './node-follower.js';
import { loadProgress } from './progress.js';
import { readServeConfig, type ServeFileConfig } from './serve-config.js';
import { startServer } from './server.js';
import type { ServerOptions } from './server-options.js';

/** The command's flags; the device ones (parallel, offload) are shared with the other command. */
export interface ServeOptions extends ParallelFlags, OffloadFlags {
  model?: string;
  config?: string;
  host?: string;
  port?: number;
  apiKey?: string;
  modelName?: string;
  backend?: string;
  dtype?: FloatDType;
  threads?: number;
  // engine limits
  kvCacheBytes?: number | 'auto';
  blockSize?: number;
  maxBatchTokens?: number;
  maxSequences?: number | 'auto';
  maxContext?: number;
  decodeSteps?: number;
  // server limits
  maxPromptTokens?: number;
  maxOutputTokens?: number;
  maxRequests?: number;
  maxRequestsPerConnection?: number;
  maxPayload?: number;
  heartbeat?: number;
}

const ENGINE_LIMIT_FLAGS = ['kvCacheBytes', 'blockSize', 'maxBatchTokens', 'maxSequences', 'maxContext', 'decodeSteps'] as const;

export function serveCommand(io: CliIo, done: (exitCode: number) => void): Command {
  const count = (flag: string, what: string) => new Option(flag, what).argParser(parseCount);
  const cmd = new Command('serve')
    .description('serve a model over WebSocket and an OpenAI-compatible HTTP API, with a playground page, /health and /metrics')
    .addOption(new Option('--model <dir>', 'Hugging Face model directory (default: the embedded default model)'))
    .addOption(new Option('--config <file>', 'JSON file: {model, backend, dtype, threads, limits: {createEngine limits}, server: {host, port, apiKey, ...}}; flags win'))
    .addOption(new Option('--host <addr>', 'interface to listen on (default 127.0.0.1: this machine only)'))
    .addOption(new Option('--port <n>', 'port (default 8080; 0 = any free port)').argParser(parseInteger))
    .addOption(new Option('--api-key <key>', 'require this key (Authorization: Bearer, or the WebSocket auth subprotocol)').env('ZINFER_API_KEY'))
    .addOption(new Option('--model-name <id>', 'model id in /v1/models and in requests (default: the model folder name)'))
    .addOption(new Option('--backend <name>', `kernel backend (available in this build: ${AVAILABLE_BACKENDS.join(', ')}; default reference)`).choices(BACKEND_NAMES))
    .addOption(new Option('--dtype <dtype>', 'dtype to hold weights in (default: as stored)').choices(['f32', 'f16', 'bf16']))
    .addOption(count('--threads <n>', 'worker threads of the cpu backend (default: every core, at most 32)'));
  // The device flags, shared with the other command.
  for (const option of [...parallelOptions(), ...offloadOptions()]) cmd.addOption(option);
  return cmd
    .addOption(new Option('--kv-cache-bytes <bytes>', "KV-cache budget, e.g. 512MiB (engine default 256MiB); 'auto': the device memory the weights leave").argParser(orAuto(parseBytes)))
    .addOption(count('--block-size <n>', 'tokens per KV-cache block (default 16)'))
    .addOption(count('--max-batch-tokens <n>', 'tokens per step, prompt chunks and decode together (default 512)'))
    .addOption(new Option('--max-sequences <n>', "requests in the running batch (default 64); 'auto': as many as the KV cache holds at --max-context").argParser(orAuto(parseCount)))
    .addOption(count('--max-context <n>', 'longest prompt + generation (default: the model\'s)'))
    .addOption(count('--decode-steps <n>', 'decode steps a call runs where the backend chains them on the device (cuda; greedy rows, and sampled ones without a repetition penalty; default 4, at most 64): tokens then stream in runs of up to n; 1 = one step a call'))
    .addOption(count('--max-prompt-tokens <n>', 'longest prompt a request may send (default: context - 1)'))
    .addOption(count('--max-output-tokens <n>', 'largest max_tokens a request may ask for (default: the context)'))
    .addOption(count('--max-requests <n>', 'requests in flight on the server (default 1024)'))
    .addOption(count('--max-requests-per-connection <n>', 'requests in flight per WebSocket (default 64)'))
    .addOption(new Option('--max-payload <bytes>', 'largest request body or WebSocket message (default 1MiB)').argParser(parseBytes))
    .addOption(new Option('--heartbeat <ms>', 'WebSocket ping interval in ms, 0 = off (default 30000)').argParser(parseInteger))
    .addHelpText('after', '\nPrints its URLs on stdout; stops on Ctrl-C (SIGINT) or SIGTERM. Exit codes: 0 ok, 1 failed, 2 wrong command line.')
    .action(async (opts: ServeOptions) => done(await runServe(opts, io)));
}

export async function runServe(o: ServeOptions, io: CliIo): Promise<number> {
  const follower = await runIfFollower(o, io);
  if (follower !== null) return follower;
  const offload = offloadFromFlags(o);
  const file: ServeFileConfig = o.config ? readServeConfig(o.config) : {};
  const model = o.model ?? file.model;
  const dir = model === undefined ? defaultModelDir() : resolve(model);
  checkModelDir(dir);
  const backendName = o.backend ?? file.backend ?? 'reference';
  const threads = o.threads ?? file.threads;
  const backend = await createBackend(backendName, threads === undefined ? {} : { threads });
  const limits: EngineLimits = { ...file.limits };
  for (const k of ENGINE_LIMIT_FLAGS) if (o[k] !== undefined) (limits as Record<string, unknown>)[k] = o[k];
  const dtype = o.dtype ?? file.dtype;

  const progress = loadProgress(io.stderr);
  const moe = replannerFromFlags(o, parallelFromFlags(o)); // --ep: POST /admin/moe/replan re-plans its placement
  const parallel = moe?.strategy() ?? parallelFromFlags(o);
  const loading = createEngine({ model: dir, backend, limits, onLoadProgress: progress.update, ...(dtype ? { dtype } : {}), ...(parallel ? { parallel } : {}), ...(offload ? { offload } : {}) });
  loading.then(progress.stop, progress.stop);
  const server = await startServer({ ...serverOptions(o, file), ...(moe ? { moe } : {}), modelName: o.modelName ?? file.server?.modelName ?? (model === undefined ? DEFAULT_MODEL_NAME : basename(dir)), engine: loading }).catch(async (e: unknown) => {
    await loading.then((engine) => engine.close(), () => {});
    throw e;
  });
  const out = (line: string) => io.stdout.write(`${line}\n`);
  out(`zinfer serve: ${dir} on backend ${backend.name}`);
  out(`  playground  ${server.url}`);
  out(`  websocket   ${server.wsUrl}`);
  out(`  openai api  ${server.openaiUrl}`);
  out(`  health      ${server.url}health`);
  out(`  metrics     ${server.url}metrics`);
  let engine;
  try {
    engine = await server.ready;
  } catch (e) {
    await server.close();
    throw e;
  }
  io.stderr.write(offloadSummary(engine.offload?.summary));
  out(`zinfer serve: ready (${engine.kvBlocks.total} KV-cache blocks of ${engine.kvBlocks.blockSize} tokens, context ${engine.maxContext})`);
  await untilSignal();
  io.stderr.write('zinfer serve: shutting down\n');
  await server.close();
  await engine.close();
  return EXIT_OK;
}

function serverOptions(o: ServeOptions, file: ServeFileConfig): Omit<ServerOptions, 'engine'> {
  const s: Omit<ServerOptions, 'engine'> = { ...file.server };
  const set = <K extends keyof typeof s>(k: K, v: (typeof s)[K] | undefined) => {
    if (v !== undefined) s[k] = v;
  };
  set('host', o.host);
  set('port', o.port);
  set('apiKey', o.apiKey);
  set('maxPromptTokens', o.maxPromptTokens);
  set('maxOutputTokens', o.maxOutputTokens);
  set('maxRequests', o.maxRequests);
  set('maxRequestsPerConnection', o.maxRequestsPerConnection);
  set('maxPayloadBytes', o.maxPayload);
  set('heartbeatMs', o.heartbeat);
  return s;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
