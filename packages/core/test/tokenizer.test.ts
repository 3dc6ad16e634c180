import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ModelFormatError, TokenizerError } from '../src/errors.js';
import { loadTokenizer, type TextTokenizer } from '../src/tokenizer.js';

// A tiny GPT-2 style byte-level BPE (see fixtures/tokenizer-bpe/make-fixture.mjs): ids 0-255 are bytes,
// 256-290 merges, 291 <|endoftext|>, 292 <|im_start|>, 293 <|im_end|>.
const FIXTURE = fileURLToPath(new URL('./fixtures/tokenizer-bpe/', import.meta.url));
const ENDOFTEXT = 291;
const IM_START = 292;
const IM_END = 293;
const TEXTS = [
  'Hello world', 'the café', '中文', '😀', 'héllo, 世界! 😀😀 <|im_end|> done\n', ' a  b\t\nc', '',
];

const tempDirs: string[] = [];

/** A temp copy of the fixture with some files replaced (a string) or removed (null). */
async function variant(files: Record<string, string | null> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'zinfer-tok-'));
  tempDirs.push(dir);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(FIXTURE, f), join(dir, f));
  for (const [f, text] of Object.entries(files)) {
    if (text === null) await rm(join(dir, f));
    else await writeFile(join(dir, f), text);
  }
  return dir;
}

async function fixtureJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(FIXTURE, file), 'utf8')) as Record<string, unknown>;
}

async function load(dir = FIXTURE): Promise<TextTokenizer> {
  const tok = await loadTokenizer(dir);
  if (tok === null) throw new Error(`no tokenizer in ${dir}`);
  return tok;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

function throwsError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

/** mulberry32: a seeded generator, so a failing random case reproduces. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function streamAll(tok: TextTokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const dec = tok.createStreamDecoder({ skipSpecialTokens });
  return [...ids.map((id) => dec.push(id)), dec.flush()];
}

test('encode uses the merges and decode round-trips ASCII and multi-byte text', async () => {
  const tok = await load();
  assert.equal(tok.encode('Hello world'), [284, 281]); // 'Hello', 'Ġworld'
  assert.equal(tok.encode('é'), [287]); // C3 A9 merged into one token
  assert.equal(tok.encode('中'), [288, 0xad]); // E4 B8 merged, AD alone: a token ends mid-character
  for (const text of TEXTS) assert.is(tok.decode(tok.encode(text)), text, JSON.stringify(text));
});

test('special tokens in text encode to their ids; skipSpecialTokens drops them on decode', async () => {
  const tok = await load();
  const ids = tok.encode('<|im_start|>user\nhi<|im_end|>');
  assert.is(ids[0], IM_START);
  assert.is(ids[ids.length - 1], IM_END);
  assert.is(tok.decode(ids, { skipSpecialTokens: true }), 'user\nhi');
  assert.is(tok.decode([]), '');
  assert.is(tok.decode(Int32Array.from(ids)), '<|im_start|>user\nhi<|im_end|>');
});

test('GPT-2 style ByteLevel post_processor adds no special tokens', async () => {
  const tok = await load();
  assert.equal(tok.encode('Hello'), [284]);
  assert.equal(tok.encode('Hello', { addSpecialTokens: false }), [284]);
});

test('Llama style TemplateProcessing post_processor adds BOS unless addSpecialTokens is false', async () => {
  const json = await fixtureJson('tokenizer.json');
  json.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [],
    special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [ENDOFTEXT], tokens: ['<|endoftext|>'] } },
  };
  const tok = await load(await variant({ 'tokenizer.json': JSON.stringify(json) }));
  assert.equal(tok.encode('Hello'), [ENDOFTEXT, 284]);
  assert.equal(tok.encode('Hello', { addSpecialTokens: false }), [284]);
  assert.is(tok.bosTokenId, ENDOFTEXT);
});

test('vocabSize counts added tokens', async () => {
  assert.is((await load()).vocabSize, 294);
});

test('stream decoder holds an incomplete UTF-8 character until it completes', async () => {
  const tok = await load();
  const dec = tok.createStreamDecoder();
  assert.is(dec.push(288), ''); // E4 B8: two thirds of 中
  assert.is(dec.push(0xad), '中');
  assert.is(dec.push(289), ''); // F0 9F
  assert.is(dec.push(290), '😀'); // 98 80
  assert.is(dec.flush(), '');
});

test('stream decoder never emits U+FFFD for complete text and joins to the text', async () => {
  const tok = await load();
  for (const text of TEXTS) {
    const chunks = streamAll(tok, tok.encode(text));
    for (const c of chunks) assert.not.ok(c.includes('\uFFFD'), `${JSON.stringify(text)} chunk ${JSON.stringify(c)}`);
    assert.is(chunks.join(''), text);
  }
});

test('stream decoder output joins to decode() for random id sequences', async () => {
  const tok = await load();
  const rand = rng(1234);
  // Pieces of real text make mid-character splits common; raw random ids add invalid UTF-8 and specials.
  const pieces = TEXTS.flatMap((t) => tok.encode(t));
  for (let n = 0; n < 300; n++) {
    const len = 1 + Math.floor(rand() * 40);
    const ids = Array.from({ length: len }, () =>
      rand() < 0.7 ? pieces[Math.floor(rand() * pieces.length)] : Math.floor(rand() * tok.vocabSize),
    );
    for (const skip of [false, true]) {
      const joined = streamAll(tok, ids, skip).join('');
      assert.is(joined, tok.decode(ids, { skipSpecialTokens: skip }), `ids ${JSON.stringify(ids)} skip ${skip}`);
    }
  }
});

/** A Llama 2 style SentencePiece-as-BPE tokenizer.json: ▁ for spaces, <0xNN> byte fallback, a decoder that
 * strips the leading space. Its decoding depends on context, which the stream decoder must handle. */
function sentencePieceJson(): Record<string, unknown> {
  const specials = ['<unk>', '<s>', '</s>'];
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const merges = [
    ['▁', 't'], ['h', 'e'], ['▁t', 'he'], ['l', 'l'], ['▁', 'w'], ['o', 'r'], ['▁w', 'or'], ['l', 'd'],
    ['▁wor', 'ld'], ['▁', 'H'], ['e', 'll'], ['▁H', 'ell'], ['▁Hell', 'o'], ['▁', 'é'],
  ];
  const pieces = [...specials, ...bytes, ...'▁abcdefghijklmnopqrstuvwxyzHWé,!', ...merges.map(([a, b]) => a + b)];
  const vocab = Object.fromEntries(pieces.map((p, i) => [p, i]));
  return {
    version: '1.0',
    added_tokens: specials.map((content, id) => ({ id, content, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges },
  };
}

test('SentencePiece style: BOS from the post_processor, stream decoding keeps the spaces', async () => {
  const config = JSON.stringify({ bos_token: '<s>', eos_token: '</s>', clean_up_tokenization_spaces: false });
  const dir = await variant({ 'tokenizer.json': JSON.stringify(sentencePieceJson()), 'tokenizer_config.json': config });
  const tok = await load(dir);
  const text = 'Hello world, the café 中文 😀!';
  const ids = tok.encode(text);
  assert.is(ids[0], 1);
  assert.is(tok.bosTokenId, 1);
  assert.equal(tok.eosTokenIds, [2]);
  assert.is(tok.decode(ids, { skipSpecialTokens: true }), text);
  const chunks = streamAll(tok, ids.slice(1));
  assert.ok(chunks.includes(' world'));
  for (const c of chunks) assert.not.ok(c.includes('\uFFFD'), JSON.stringify(chunks));
  assert.is(chunks.join(''), text);
  const rand = rng(99);
  const pieces = tok.encode(text, { addSpecialTokens: false });
  for (let n = 0; n < 200; n++) {
    const seq = Array.from({ length: 1 + Math.floor(rand() * 30) }, () =>
      rand() < 0.7 ? pieces[Math.floor(rand() * pieces.length)] : Math.floor(rand() * tok.vocabSize),
    );
    for (const skip of [false, true]) {
      assert.is(streamAll(tok, seq, skip).join(''), tok.decode(seq, { skipSpecialTokens: skip }), JSON.stringify(seq));
    }
  }
});

test('chat template renders with and without the generation prompt', async () => {
  const tok = await load();
  assert.ok(tok.hasChatTemplate);
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi 中文' },
  ];
  const body = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi 中文<|im_end|>\n';
  // bos_token comes from tokenizer_config.json as a string; eos_token there uses the {content} form.
  assert.is(tok.applyChatTemplate(messages), '<|endoftext|>' + body);
  const prompted = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
  assert.is(prompted, '<|endoftext|>' + body + '<|im_start|>assistant\n');
  const ids = tok.encode(tok.applyChatTemplate(messages), { addSpecialTokens: false });
  assert.equal(ids.slice(0, 2), [ENDOFTEXT, IM_START]);
});

test('raise_exception in a template throws TokenizerError', async () => {
  const tok = await load();
  const e = throwsError(() => tok.applyChatTemplate([{ role: 'robot', content: 'x' }]));
  assert.instance(e, TokenizerError);
  assert.match((e as TokenizerError).message, 'Unknown role: robot');
  assert.is((e as TokenizerError).info.field, 'chat_template');
});

test('chat_template.jinja wins over tokenizer_config.json and receives tools, extra and eos_token', async () => {
  const jinja = '{{ messages[0].content }}|{{ tools | length }}|{{ flavour }}|{{ eos_token }}';
  const tok = await load(await variant({ 'chat_template.jinja': jinja }));
  const out = tok.applyChatTemplate([{ role: 'user', content: 'q' }], { tools: [{}, {}], extra: { flavour: 'x' } });
  assert.is(out, 'q|2|x|<|im_end|>');
  const broken = await load(await variant({ 'chat_template.jinja': '{% for %}' }));
  const e = throwsError(() => broken.applyChatTemplate([{ role: 'user', content: 'q' }]));
  assert.instance(e, TokenizerError);
  assert.is((e as TokenizerError).info.file, 'chat_template.jinja');
});

test('the list form of chat_template picks the template named default', async () => {
  const config = await fixtureJson('tokenizer_config.json');
  config.chat_template = [
    { name: 'tool_use', template: 'tools' },
    { name: 'default', template: 'default:{{ messages | length }}' },
  ];
  const tok = await load(await variant({ 'tokenizer_config.json': JSON.stringify(config) }));
  assert.is(tok.applyChatTemplate([{ role: 'user', content: 'q' }]), 'default:1');
});

test('no chat template: hasChatTemplate is false and applyChatTemplate names the field', async () => {
  const config = await fixtureJson('tokenizer_config.json');
  delete config.chat_template;
  const noField = await variant({ 'tokenizer_config.json': JSON.stringify(config) });
  const noFile = await variant({ 'tokenizer_config.json': null });
  for (const dir of [noField, noFile]) {
    const tok = await load(dir);
    assert.not.ok(tok.hasChatTemplate);
    const e = throwsError(() => tok.applyChatTemplate([{ role: 'user', content: 'q' }]));
    assert.instance(e, TokenizerError);
    assert.is((e as TokenizerError).info.file, 'tokenizer_config.json');
    assert.is((e as TokenizerError).info.field, 'chat_template');
  }
});

test('a directory without tokenizer.json gives null', async () => {
  assert.is(await loadTokenizer(await variant({ 'tokenizer.json': null })), null);
});

test('malformed JSON throws TokenizerError naming the file', async () => {
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) {
    const e = await rejection(loadTokenizer(await variant({ [file]: '{"model": ' })));
    assert.instance(e, TokenizerError);
    assert.is((e as TokenizerError).info.file, file);
  }
  const e = await rejection(loadTokenizer(await variant({ 'tokenizer.json': '{"model": {"type": "Nope"}}' })));
  assert.instance(e, TokenizerError);
  assert.is((e as TokenizerError).info.file, 'tokenizer.json');
});

test('eos ids come from generation_config.json (int or list) then tokenizer_config eos_token', async () => {
  assert.equal((await load()).eosTokenIds, [IM_END]);
  const asInt = await load(await variant({ 'generation_config.json': '{"eos_token_id": 291}' }));
  assert.equal(asInt.eosTokenIds, [ENDOFTEXT, IM_END]);
  const asList = await load(await variant({ 'generation_config.json': '{"eos_token_id": [293, 291]}' }));
  assert.equal(asList.eosTokenIds, [IM_END, ENDOFTEXT]);
  const e = await rejection(loadTokenizer(await variant({ 'generation_config.json': '{"eos_token_id": "x"}' })));
  assert.instance(e, ModelFormatError);
  assert.is((e as ModelFormatError).info.field, 'eos_token_id');
});

test.after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

test.run();
