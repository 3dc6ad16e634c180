// `zinfer generate`: one request through a local engine, streamed to stdout as text, or printed as one JSON
// object with --json. The flags are the CLI contract of DESIGN.md; with --offload the placement summary
// goes to stderr, so stdout stays the tokens (or the one JSON object).
import { existsSync, statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { offloadFromFlags, offloadOptions, offloadSummary, type OffloadFlags } from './offload-flags.js';
import { parallelFromFlags, parallelOptions, type ParallelFlags } from './parallel-flags.js';
import { ConfigError, createEngine, type Engine, type FloatDType, type GenerateRequest, type GenerationResult, type GenerationStream } from '@zinfer/core';
import { AVAILABLE_BACKENDS, BACKEND_NAMES, createBackend } from './backends.js';
import { EXIT_INTERRUPTED, EXIT_OK, UsageError } from './cli-errors.js';
import type { CliIo } from './cli-io.js';
import { collect, parseBytes, parseCount, parseInteger, parseNumber, parseTokenIds } from './parse-flags.js';
import { runIfFollower } from './node-follower.js';
import { loadProgress } from './progress.js';

/** The command's flags; the device ones (parallel, offload) are shared with the other command. */
export interface GenerateOptions extends ParallelFlags, OffloadFlags {
  model: string;
  prompt?: string;
  inputIds?: number[];
  maxTokens: number;
  temperature: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stop?: string[];
  backend: string;
  dtype?: FloatDType;
  json?: boolean;
  logits?: boolean;
}

const DEFAULT_MAX_TOKENS = 64;
// Greedy by default: CLI runs are compared by tests and benchmarks, so the same command gives the same tokens.
const DEFAULT_TEMPERATURE = 0;

export function generateCommand(io: CliIo, done: (exitCode: number) => void): Command {
  const cmd = new Command('generate')
    .description('generate tokens for one prompt and print them (text, or one JSON object with --json)')
    .addOption(new Option('--model <dir>', 'Hugging Face model directory (config.json, *.safetensors, optional tokenizer.json)').makeOptionMandatory())
    .addOption(new Option('--prompt <text>', 'prompt text (needs tokenizer.json in the model directory)').conflicts('inputIds'))
    .addOption(new Option('--input-ids <ids>', 'prompt as comma-separated token ids, e.g. 1,2,3').argParser(parseTokenIds))
    .addOption(new Option('--max-tokens <n>', 'most tokens to generate').default(DEFAULT_MAX_TOKENS).argParser(parseInteger))
    .addOption(new Option('--temperature <t>', 'sampling temperature; 0 = greedy, the default, so that runs are reproducible').default(DEFAULT_TEMPERATURE).argParser(parseNumber))
    .addOption(new Option('--top-p <p>', 'nucleus sampling: keep the top tokens whose probability sums to p, in (0, 1] (default: 1 = off)').argParser(parseNumber))
    .addOption(new Option('--top-k <k>', 'keep only the k most likely tokens (default: 0 = off)').argParser(parseInteger))
    .addOption(new Option('--min-p <p>', 'drop tokens below p times the top probability, in [0, 1) (default: 0 = off)').argParser(parseNumber))
    .addOption(new Option('--repetition-penalty <r>', 'penalty on tokens already seen, > 0 (default: 1 = off)').argParser(parseNumber))
    .addOption(new Option('--seed <s>', 'seed of the sampler, for reproducible sampling at temperature > 0').argParser(parseInteger))
    .addOption(new Option('--stop <str>', 'stop when the text contains str (repeatable)').argParser(collect))
    .addOption(new Option('--backend <name>', `kernel backend (available in this build: ${AVAILABLE_BACKENDS.join(', ')})`).choices(BACKEND_NAMES).default('reference'))
    .addOption(new Option('--dtype <dtype>', 'dtype to hold weights in (default: as stored)').choices(['f32', 'f16', 'bf16']));
  // The device flags, shared with the other command.
  for (const option of [...parallelOptions(), ...offloadOptions()]) cmd.addOption(option);
  return cmd
    .addOption(new Option('--json', 'print one JSON object {tokens, text, finish_reason, prompt_tokens[, logits]} instead of streaming text'))
    .addOption(new Option('--logits', 'with --json: add the logits of every prompt position'))
    .addHelpText('after', '\nWithout a tokenizer, generated token ids are printed space-separated.\nExit codes: 0 ok, 1 failed (model, request, backend), 2 wrong command line, 130 interrupted.')
    .action(async (opts: GenerateOptions) => done(await runGenerate(opts, io)));
}

export async function runGenerate(o: GenerateOptions, io: CliIo): Promise<number> {
  const follower = await runIfFollower(o, io);
  if (follower !== null) return follower;
  const request = toRequest(o);
  checkModelDir(o.model);
  const offload = offloadFromFlags(o);
  const backend = await createBackend(o.backend);
  const progress = loadProgress(io.stderr);
  let engine: Engine;
  try {
    const parallel = parallelFromFlags(o);
    engine = await createEngine({ model: o.model, backend, onLoadProgress: progress.update, ...(o.dtype ? { dtype: o.dtype } : {}), ...(parallel ? { parallel } : {}), ...(offload ? { offload } : {}) });
  } finally {
    progress.stop();
  }
  io.stderr.write(offloadSummary(engine.offload?.summary));
  try {
    const stream = engine.generate(request);
    // Ctrl-C ends generation cleanly (what was generated is still printed); a second one kills as usual.
    const cancel = (): void => stream.cancel();
    process.once('SIGINT', cancel);
    try {
      const result = o.json ? await stream.result : await streamText(stream, io.stdout, engine.tokenizer !== null);
      if (o.json) writeJson(io.stdout, result);
      return result.finishReason === 'abort' ? EXIT_INTERRUPTED : EXIT_OK;
    } finally {
      process.off('SIGINT', cancel);
    }
  } finally {
    await engine.close();
  }
}

function toRequest(o: GenerateOptions): GenerateRequest {
  if ((o.prompt === undefined) === (o.inputIds === undefined)) throw new UsageError('give exactly one of --prompt TEXT or --input-ids 1,2,3', { field: 'prompt' });
  if (o.logits && !o.json) throw new UsageError('--logits only applies with --json', { field: 'logits' });
  const r: GenerateRequest = o.prompt !== undefined ? { prompt: o.prompt } : { inputIds: o.inputIds };
  r.maxTokens = o.maxTokens;
  r.temperature = o.temperature;
  if (o.topP !== undefined) r.topP = o.topP;
  if (o.topK !== undefined) r.topK = o.topK;
  if (o.minP !== undefined) r.minP = o.minP;
  if (o.repetitionPenalty !== undefined) r.repetitionPenalty = o.repetitionPenalty;
  if (o.seed !== undefined) r.seed = o.seed;
  if (o.stop !== undefined) r.stopStrings = o.stop;
  if (o.logits) r.promptLogits = true;
  return r;
}

// The engine would also fail (no config.json), but naming the flag and the path is clearer for a typo.
export function checkModelDir(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError('the model directory does not exist', { field: 'model', expected: 'a Hugging Face model directory', found: dir });
  }
}

/** Writes each token's text as it arrives (its id, space-separated, when there is no tokenizer), then a newline. */
async function streamText(stream: GenerationStream, out: NodeJS.WritableStream, hasTokenizer: boolean): Promise<GenerationResult> {
  for await (const ev of stream) out.write(hasTokenizer ? ev.text : `${ev.index ? ' ' : ''}${ev.token}`);
  out.write('\n');
  return stream.result;
}

/**
 * One JSON object. Logits go out row by row: a long prompt times a large vocabulary is too big for one
 * string. A float32 widened to a double prints exactly (String(x) round-trips); non-finite values are null,
 * as JSON.stringify would write them.
 */
function writeJson(out: NodeJS.WritableStream, r: GenerationResult): void {
  const head = JSON.stringify({ tokens: r.tokens, text: r.text, finish_reason: r.finishReason, prompt_tokens: r.promptTokens });
  if (!r.promptLogits) {
    out.write(`${head}\n`);
    return;
  }
  out.write(`${head.slice(0, -1)},"logits":[`);
  r.promptLogits.forEach((row, i) => out.write(`${i ? ',' : ''}[${Array.from(row, (x) => (Number.isFinite(x) ? String(x) : 'null')).join(',')}]`));
  out.write(']}\n');
}
