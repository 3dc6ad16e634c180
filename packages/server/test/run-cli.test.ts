// runCli in-process, with captured streams: what a spawned process cannot easily show (Ctrl-C mid-stream,
// a progress bar on a terminal stderr) and the library entry of @zinfer/server.
import { Writable } from 'node:stream';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli, type CliIo } from '../src/index.js';

const MODEL = join(resolve(fileURLToPath(import.meta.url), '../../../..'), 'fixtures/models/gpt2');

function capture(onWrite?: (text: string) => void): Writable & { text: () => string; isTTY?: boolean } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      onWrite?.(String(chunk));
      cb();
    },
  });
  return Object.assign(w, { text: () => chunks.join('') });
}

test('Ctrl-C during streaming cancels: partial text, newline, exit 130, no listener left', async () => {
  const before = process.listenerCount('SIGINT');
  let sent = false;
  const stdout = capture(() => {
    if (!sent) process.emit('SIGINT', 'SIGINT');
    sent = true;
  });
  const stderr = capture();
  const io: CliIo = { stdout, stderr };
  const code = await runCli(['generate', '--model', MODEL, '--input-ids', '1,2', '--max-tokens', '100'], io);
  assert.is(code, 130, stderr.text());
  assert.ok(stdout.text().endsWith('\n'));
  // gpt2's greedy token decodes to "ent": far fewer than 100 of them made it out.
  assert.ok(stdout.text().length < 3 * 50, `stopped early: ${JSON.stringify(stdout.text())}`);
  assert.is(process.listenerCount('SIGINT'), before);
});

test('a terminal stderr gets a progress bar; stdout stays one JSON object', async () => {
  const stdout = capture();
  const stderr = Object.assign(capture(), { isTTY: true, columns: 100 });
  const code = await runCli(['generate', '--model', MODEL, '--input-ids', '1,2', '--max-tokens', '2', '--json'], { stdout, stderr });
  assert.is(code, 0, stderr.text());
  assert.match(stderr.text(), /loading weights/);
  assert.equal(Object.keys(JSON.parse(stdout.text())), ['tokens', 'text', 'finish_reason', 'prompt_tokens']);
});

test('a pipe stderr stays silent on success', async () => {
  const stdout = capture();
  const stderr = capture();
  assert.is(await runCli(['generate', '--model', MODEL, '--input-ids', '1,2', '--max-tokens', '2'], { stdout, stderr }), 0);
  assert.is(stderr.text(), '');
});

test.run();
