// The text side of a Hugging Face model directory: tokenizer.json (through @huggingface/tokenizers),
// tokenizer_config.json (special tokens, chat template), chat_template.jinja and generation_config.json.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelFormatError, TokenizerError } from './errors.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  /** End the prompt with the header of an assistant turn, so the model answers. Default false. */
  addGenerationPrompt?: boolean;
  /** Tool (function) schemas, passed to the template as `tools`. */
  tools?: unknown[];
  /** More template variables (e.g. `enable_thinking`). messages, add_generation_prompt, tools, bos_token and
   * eos_token win over these; names @huggingface/jinja predefines (range, raise_exception, true...) are refused. */
  extra?: Record<string, unknown>;
}

export interface StreamDecoderOptions {
  skipSpecialTokens?: boolean;
}

/** Turns generated ids into text one id at a time. push() + ... + flush() joined equals decode(allIds). */
export interface StreamDecoder {
  /** Adds one id; returns the text it completed (often '', e.g. mid UTF-8 character). */
  push(id: number): string;
  /** Returns whatever is still held back, incomplete characters included. */
  flush(): string;
}

export interface TextTokenizer {
  /** addSpecialTokens (default true) applies tokenizer.json's post_processor: Llama adds BOS, GPT-2 nothing.
   * Encode a rendered chat template with addSpecialTokens false: the template already holds BOS. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: ArrayLike<number>, opts?: { skipSpecialTokens?: boolean }): string;
  createStreamDecoder(opts?: StreamDecoderOptions): StreamDecoder;
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string;
  /** generation_config.json's eos_token_id (int or list) then tokenizer_config.json's eos_token, deduplicated. */
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  /** One past the largest id the tokenizer knows, added tokens included. */
  readonly vocabSize: number;
  readonly hasChatTemplate: boolean;
}

const TOKENIZER_JSON = 'tokenizer.json';
const TOKENIZER_CONFIG = 'tokenizer_config.json';
const CHAT_TEMPLATE_FILE = 'chat_template.jinja';
const GENERATION_CONFIG = 'generation_config.json';

type Json = Record<string, unknown>;

/** Loads the tokenizer of a model directory, or null when it has no tokenizer.json (ids-only use). */
export async function loadTokenizer(dir: string): Promise<TextTokenizer | null> {
  const [tokenizerText, configText, jinjaText, generationText] = await Promise.all(
    [TOKENIZER_JSON, TOKENIZER_CONFIG, CHAT_TEMPLATE_FILE, GENERATION_CONFIG].map((f) => readOptional(join(dir, f))),
  );
  if (tokenizerText === undefined) return null;
  const tokenizerJson = parseJsonObject(tokenizerText, TOKENIZER_JSON);
  const config = configText === undefined ? {} : parseJsonObject(configText, TOKENIZER_CONFIG);
  const generation = generationText === undefined ? {} : parseJsonObject(generationText, GENERATION_CONFIG);

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tokenizerJson, withPlainSpecialTokens(config));
  } catch (e) {
    throw new TokenizerError('@huggingface/tokenizers cannot build a tokenizer from this file', {
      file: TOKENIZER_JSON,
      expected: 'a tokenizer.json written by Hugging Face tokenizers',
      found: errorMessage(e),
    });
  }

  const bosToken = tokenString(config.bos_token);
  const eosToken = tokenString(config.eos_token);
  const genBos = generation.bos_token_id;
  const bosTokenId =
    (bosToken === null ? undefined : tok.token_to_id(bosToken)) ?? (isTokenId(genBos) ? genBos : null);
  const eosTokenIds = readGenerationEos(generation);
  // A config naming a token the vocabulary lacks happens in converted checkpoints; generation_config still stops.
  const eosId = eosToken === null ? undefined : tok.token_to_id(eosToken);
  if (eosId !== undefined && !eosTokenIds.includes(eosId)) eosTokenIds.push(eosId);
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  // The library defaults clean_up_tokenization_spaces to true (" ." -> "."), which breaks round trips and
  // streaming; transformers now defaults it to false, so only an explicit true in the config turns it on.
  const cleanUp = config.clean_up_tokenization_spaces === true;
  const decode = (ids: ArrayLike<number>, skipSpecial: boolean): string => {
    if (ids.length === 0) return ''; // the library throws on an empty list, and wants a real Array
    return tok.decode(Array.from(ids), { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: cleanUp });
  };

  const chat = findChatTemplate(config, jinjaText);
  let compiled: Template | undefined;

  return {
    eosTokenIds,
    bosTokenId,
    vocabSize,
    hasChatTemplate: 'text' in chat,
    encode: (text, opts = {}) => tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids,
    decode: (ids, opts = {}) => decode(ids, opts.skipSpecialTokens ?? false),
    createStreamDecoder: (opts = {}) => createStreamDecoder((ids) => decode(ids, opts.skipSpecialTokens ?? false)),
    applyChatTemplate(messages, opts = {}) {
      if (!('text' in chat)) {
        const { missing, expected, found } = chat;
        throw new TokenizerError(missing, { file: TOKENIZER_CONFIG, field: 'chat_template', expected, found });
      }
      const details = { file: chat.file, field: chat.file === TOKENIZER_CONFIG ? 'chat_template' : undefined };
      try {
        compiled ??= new Template(chat.text);
      } catch (e) {
        throw new TokenizerError('the chat template does not parse', { ...details, found: errorMessage(e) });
      }
      // @huggingface/jinja declares raise_exception itself (throwing a plain Error) and refuses to have it
      // redeclared, so its errors, raise_exception's included, become a TokenizerError here.
      const context: Json = { ...opts.extra, messages, add_generation_prompt: opts.addGenerationPrompt ?? false };
      // Like transformers: an unset special token is undefined in the template, not ''.
      if (bosToken !== null) context.bos_token = bosToken;
      if (eosToken !== null) context.eos_token = eosToken;
      if (opts.tools !== undefined) context.tools = opts.tools;
      try {
        return compiled.render(context);
      } catch (e) {
        const found = errorMessage(e);
        throw new TokenizerError('the chat template raised an error on these messages', { ...details, found });
      }
    },
  };
}

/**
 * Incremental detokenization (the prefix-window scheme of text-generation-inference). Each push decodes
 * the ids from the last emitted chunk's start and emits only what extends that chunk's text, so tokenizers
 * whose decoding depends on context (SentencePiece's leading space) come out right. Text ending in U+FFFD
 * is held back: it is an incomplete UTF-8 sequence that the next byte-level token may complete.
 */
function createStreamDecoder(decode: (ids: number[]) => string): StreamDecoder {
  let ids: number[] = [];
  let readStart = 0; // ids before this were emitted; ids[0, readStart) is the context window

  const step = (final: boolean): string => {
    const prefix = decode(ids.slice(0, readStart));
    const text = decode(ids);
    if (!final && (text.length <= prefix.length || text.endsWith('\uFFFD'))) return '';
    // The emitted chunk becomes the next context window; older ids are no longer needed.
    ids = ids.slice(readStart);
    readStart = ids.length;
    return text.slice(prefix.length);
  };

  return {
    push(id) {
      ids.push(id);
      return step(false);
    },
    flush: () => step(true),
  };
}

type ChatTemplateSource = { text: string; file: string } | { missing: string; expected: string; found: string };

/** chat_template.jinja (transformers 5 writes the template there) wins over tokenizer_config.json. */
function findChatTemplate(config: Json, jinjaText: string | undefined): ChatTemplateSource {
  if (jinjaText !== undefined) return { text: jinjaText, file: CHAT_TEMPLATE_FILE };
  const t = config.chat_template;
  const expected = `a template string, a list of {name, template} with one named "default", or ${CHAT_TEMPLATE_FILE}`;
  if (typeof t === 'string') return { text: t, file: TOKENIZER_CONFIG };
  if (t === undefined || t === null) {
    const missing = 'this model has no chat template: format the prompt yourself or add one';
    return { missing, expected, found: 'no template' };
  }
  if (Array.isArray(t)) {
    const named = t.filter(isObject);
    const def = named.find((e) => e.name === 'default');
    if (def !== undefined && typeof def.template === 'string') return { text: def.template, file: TOKENIZER_CONFIG };
    const names = named.map((e) => JSON.stringify(e.name)).join(', ');
    const missing = 'this model has several chat templates and none named "default"';
    return { missing, expected, found: `templates named ${names}` };
  }
  return { missing: 'tokenizer_config.json has a chat_template of the wrong type', expected, found: typeof t };
}

function readGenerationEos(generation: Json): number[] {
  const raw = generation.eos_token_id;
  if (raw === undefined || raw === null) return [];
  const list = Array.isArray(raw) ? raw : [raw];
  if (!list.every(isTokenId)) {
    throw new ModelFormatError('generation_config.json has a malformed eos_token_id', {
      file: GENERATION_CONFIG,
      field: 'eos_token_id',
      expected: 'a token id or a list of token ids',
      found: JSON.stringify(raw),
    });
  }
  return [...new Set(list)];
}

/** Special tokens in tokenizer_config.json are a string or an AddedToken object {content, ...}. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** The library reads some special tokens (Unigram's eos_token) as strings, so flatten the object form. */
function withPlainSpecialTokens(config: Json): Json {
  const out: Json = { ...config };
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    if (isObject(out[key])) out[key] = tokenString(out[key]) ?? undefined;
  }
  return out;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function parseJsonObject(text: string, file: string): Json {
  const Err = file === GENERATION_CONFIG ? ModelFormatError : TokenizerError;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Err(`${file} is not valid JSON`, { file, expected: 'a JSON object', found: errorMessage(e) });
  }
  if (!isObject(value)) {
    const found = Array.isArray(value) ? 'an array' : typeof value;
    throw new Err(`${file} is not a JSON object`, { file, expected: 'a JSON object', found });
  }
  return value;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isTokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
