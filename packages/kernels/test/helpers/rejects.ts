import * as assert from 'uvu/assert';

/** Asserts that `p` rejects with a BackendError whose message matches `message`. */
export async function rejects(p: Promise<unknown>, message: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.is((e as Error).name, 'BackendError', (e as Error).message);
    assert.match((e as Error).message, message);
    return;
  }
  assert.unreachable(`expected a rejection matching ${message}`);
}
