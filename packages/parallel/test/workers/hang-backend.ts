// A backend for fault tests, loaded by worker ranks through its factory: the reference backend, except
// that the rank whose tensor-group rank is `hangRank` never finishes a step whose first token is `hangToken`.
import type { KernelBackend } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';

export function hangBackend(opts: { hangRank: number; hangToken: number }): KernelBackend {
  const inner = referenceBackend();
  return {
    ...inner,
    name: 'hang-test',
    factory: { module: new URL(import.meta.url).href, exportName: 'hangBackend', options: opts },
    async compile(graph, weights, options) {
      const program = await inner.compile(graph, weights, options);
      const hangs = options.communicator?.rank === opts.hangRank;
      return {
        run: (batch) => (hangs && batch.tokenIds[0] === opts.hangToken ? new Promise(() => {}) : program.run(batch)),
        dispose: () => program.dispose(),
      };
    },
  };
}
