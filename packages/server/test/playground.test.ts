// The playground page end to end in headless Chromium (Debian's chromium, driven by playwright-core):
// type a prompt, press Generate, watch the text stream in (equal to engine.generate() for the same
// seed), see tokens/s; Stop cancels. .ci/run installs chromium when /usr/bin/chromium is missing.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Engine } from '@zinfer/core';
import type { ZinferServer } from '../src/server.js';
import { modelEngine, PROMPT, serve } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
// Page-side code is given as strings: it runs in the browser, and this package compiles without DOM types.
const STATUS_DONE = `document.getElementById('status').textContent.startsWith('done')`;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let engine: Engine;
let server: ZinferServer;
let browser: BrowserContext;
let page: Page;
let profile: string;

test.before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)`);
  engine = await modelEngine();
  server = await serve(engine);
  profile = mkdtempSync(join(tmpdir(), 'zinfer-chromium-'));
  browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(20_000);
});

test.after(async () => {
  await browser?.close();
  await server?.close();
  await engine?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('type a prompt, see streamed text equal to engine.generate() and a live tokens/s', async () => {
  const want = await engine.generate({ prompt: PROMPT, maxTokens: 24, temperature: 0.8, topP: 0.95, seed: 5 }).result;
  await page.goto(server.url);
  await page.waitForFunction(`document.getElementById('model').textContent.startsWith('model zinfer-default')`);
  await page.fill('#prompt', PROMPT);
  await page.fill('#max-tokens', '24');
  await page.fill('#temperature', '0.8');
  await page.fill('#top-p', '0.95');
  await page.fill('#seed', '5');
  // Count how often the output changes: streamed text arrives in many updates, not one.
  await page.evaluate(`window.updates = 0;
    new MutationObserver(() => window.updates++).observe(document.getElementById('output'), { childList: true, characterData: true, subtree: true });`);
  await page.click('#generate');
  await page.waitForFunction(STATUS_DONE);
  assert.is(await page.textContent('#output'), want.text);
  const updates = (await page.evaluate('window.updates')) as number;
  assert.ok(updates >= 5, `the output streamed in ${updates} updates`);
  assert.match((await page.textContent('#tps'))!, /^\d+(\.\d)? tokens\/s$/);
  assert.match((await page.textContent('#tokens'))!, `${want.tokens.length} tokens`);
});

test('chat mode renders the chat template; Stop cancels a long generation', async () => {
  const want = await engine.generate({ messages: [{ role: 'user', content: 'Hello' }], maxTokens: 8, temperature: 0 }).result;
  await page.selectOption('#mode', 'chat');
  await page.fill('#prompt', 'Hello');
  await page.fill('#max-tokens', '8');
  await page.fill('#temperature', '0');
  await page.fill('#seed', '');
  await page.click('#generate');
  await page.waitForFunction(STATUS_DONE);
  assert.is(await page.textContent('#output'), want.text);

  await page.selectOption('#mode', 'complete');
  await page.fill('#max-tokens', '400');
  await page.click('#generate');
  await page.waitForFunction(`document.getElementById('output').textContent.length > 10`);
  await page.click('#stop');
  await page.waitForFunction(STATUS_DONE);
  assert.match((await page.textContent('#status'))!, 'cancelled');
});

test.run();
