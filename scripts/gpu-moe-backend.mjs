// The backend the Mixtral benchmark (scripts/gpu-moe-bench.mjs) gives its engines: cuda (or reference /
// cpu for the local check) whose compile() serves layer 0's tensors for every decoder layer l > 0. Each
// worker-thread rank re-creates it from `factory` (this module), so every rank generates only one layer of
// synthetic weights (the 93 GB model would take minutes to generate at ~0.3 GB/s per core) and still
// copies every layer's bytes into its own place on its GPU: values do not change timings. The bench's
// JSON says so (weights_repeat_layer0: true); the transformers peer does the same. Layer 0 must hold the
// same expert ids as every layer on each rank (contiguous or round-robin placement, as the bench uses; a
// load-aware placement differs per layer and would ask a rank for layer-0 experts it does not hold).
import { pathToFileURL } from 'node:url';

const SELF = pathToFileURL(new URL(import.meta.url).pathname).href;
const kernels = {
  cuda: await import('@zinfer/kernels/cuda').catch(() => null),
  reference: await import('@zinfer/kernels/reference'),
  cpu: await import('@zinfer/kernels/cpu').catch(() => null),
};

/** layers.<l>. → layers.0. (Mixtral's `model.layers.<l>.…`); null for weights outside the decoder layers. */
export function layerZeroName(name) {
  return /(^|\.)layers\.\d+\./.test(name) ? name.replace(/(^|\.)layers\.\d+\./, '$1layers.0.') : null;
}

/** A WeightSource whose layer l > 0 serves layer 0's tensors and shards (each generated once). */
export function repeatLayerZero(weights) {
  const cache = new Map();
  const memo = (key, make) => {
    let t = cache.get(key);
    if (!t) cache.set(key, (t = make()));
    return t;
  };
  const source = {
    names: () => weights.names(),
    get(name) {
      const zero = layerZeroName(name);
      return zero === null ? weights.get(name) : memo(zero, () => weights.get(zero));
    },
  };
  if (weights.getSlice) {
    source.getSlice = (name, axis, start, length) => {
      const zero = layerZeroName(name);
      return zero === null ? weights.getSlice(name, axis, start, length) : memo(`${zero}|${axis}|${start}|${length}`, () => weights.getSlice(zero, axis, start, length));
    };
  }
  if (weights.dtypeOf) source.dtypeOf = (name) => weights.dtypeOf(name);
  return source;
}

/** options: { kind: 'cuda' | 'reference' | 'cpu', ...the inner backend's options (device, activations, …) }. */
export function repeatLayerZeroBackend(options = {}) {
  const { kind = 'cuda', ...rest } = options;
  const inner = kind === 'cuda' ? kernels.cuda?.cudaBackend(rest) : kind === 'cpu' ? kernels.cpu?.cpuBackend(rest) : kernels.reference.referenceBackend();
  if (!inner) throw new Error(`the ${kind} backend is not available here`);
  return {
    name: inner.name,
    contractVersion: inner.contractVersion,
    factory: { module: SELF, exportName: 'repeatLayerZeroBackend', options: { kind, ...rest } },
    ...(inner.deviceCollectives ? { deviceCollectives: inner.deviceCollectives } : {}),
    probe: () => inner.probe(),
    supports: (node) => inner.supports(node),
    kvBytesPerBlock: (graph, blockSize, weights) => inner.kvBytesPerBlock(graph, blockSize, weights),
    compile: (graph, weights, opts) => inner.compile(graph, repeatLayerZero(weights), opts),
  };
}
