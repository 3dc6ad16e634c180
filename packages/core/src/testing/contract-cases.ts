// The parts of the KernelBackend contract that are not numbers: version, probe, supports, KV sizing,
// and refusing a weight of the wrong shape at compile time.
import { CONTRACT_VERSION } from '../contracts.js';
import type { Graph } from '../graph.js';
import type { OpNode } from '../ops.js';
import { expectBackendError } from './compare.js';
import { caseRng, opGraph, type ConformanceCase, type Harness } from './harness.js';
import { ACTIVATIONS } from './known-answers.js';
import { tinyLlama } from './tiny-llama.js';
import { matrix, memoryWeights, tensorOf } from './weights.js';

/** One graph holding a node of every op and attrs variant the suite runs. */
function everyOpGraphs(h: Harness): Graph[] {
  const tensors = new Map([
    ['x', matrix('f32', [[1, 2, 3, 4]])],
    ['w', tensorOf('f32', [4], [1, 1, 1, 1])],
    ['b', tensorOf('f32', [4], [0, 0, 0, 0])],
  ]);
  const rope = { heads: 1, headDim: 4, rotaryDim: 4, invFreq: [1, 0.1], attentionScaling: 1, interleaved: true };
  const ops = opGraph(tensors, (b, input) => {
    const x = b.layerNorm(input('x'), 'w', 'b', 1e-5);
    let y = b.rotary(x, rope);
    for (const fn of ACTIVATIONS) y = b.gatedActivation(b.activation(y, fn), x, fn);
    return b.attention(y, x, x, { layer: 0, heads: 1, kvHeads: 1, headDim: 4, scale: 0.5, slidingWindow: 2 });
  }, { layers: 1, kvHeads: 1, headDim: 4 });
  return [tinyLlama(caseRng(h, 'supports')).graph, ops];
}

function describeNode(n: OpNode): string {
  if (n.op === 'activation' || n.op === 'gatedActivation') return `${n.op} (fn ${n.attrs.fn})`;
  if (n.op === 'attention') return `attention (slidingWindow ${n.attrs.slidingWindow})`;
  if (n.op === 'rotary') return `rotary (interleaved ${n.attrs.interleaved})`;
  return n.op;
}

export function contractCases(h: Harness): ConformanceCase[] {
  const { backend } = h;
  const cases: ConformanceCase[] = [];
  const add = (name: string, run: () => Promise<void>) => cases.push({ name: `contract: ${name}`, run });

  add(`contractVersion is ${CONTRACT_VERSION}`, async () => {
    if (backend.contractVersion !== CONTRACT_VERSION) throw new Error(`backend ${backend.name} implements contract version ${backend.contractVersion}; this core is version ${CONTRACT_VERSION}`);
  });
  add('supports() is true for every op the suite uses', async () => {
    const missing = new Set<string>();
    for (const g of everyOpGraphs(h)) for (const n of g.nodes) if (!backend.supports(n)) missing.add(describeNode(n));
    if (missing.size) throw new Error(`backend ${backend.name} does not support: ${[...missing].join(', ')}`);
  });
  add('probe() resolves to null or a DeviceInfo', async () => {
    const info = await backend.probe();
    if (info === null) return;
    const ok = typeof info.device === 'string' && info.device !== '' && typeof info.description === 'string' && Number.isFinite(info.memoryBytes) && info.memoryBytes >= 0;
    if (!ok) throw new Error(`probe() returned ${JSON.stringify(info)}; expected { device: non-empty string, description: string, memoryBytes: finite number ≥ 0 }`);
  });
  add('kvBytesPerBlock() is a positive integer that grows with blockSize', async () => {
    const { graph } = tinyLlama(caseRng(h, 'kv bytes'));
    const [b16, b32] = [backend.kvBytesPerBlock(graph, 16), backend.kvBytesPerBlock(graph, 32)];
    if (!(Number.isSafeInteger(b16) && b16 > 0 && Number.isSafeInteger(b32) && b32 > b16)) {
      throw new Error(`kvBytesPerBlock(graph, 16) = ${b16}, (graph, 32) = ${b32}; expected positive integers, the second larger`);
    }
  });
  add('compile() rejects a weight whose shape disagrees with the graph, naming the weight', async () => {
    const declared = new Map([['x', matrix('f32', [[1, 2, 3]])], ['proj.weight', matrix('f32', [[1, 2, 3], [4, 5, 6]])]]);
    const graph = opGraph(declared, (b, input) => b.linear(input('x'), 'proj.weight'));
    const given = new Map([...declared, ['proj.weight', matrix('f32', [[1, 2], [3, 4], [5, 6]])]]); // [3, 2], not [2, 3]
    await expectBackendError(() => backend.compile(graph, memoryWeights(given), { kvCache: { numBlocks: 1, blockSize: 16 } }), 'compile with proj.weight [3, 2] for a graph declaring [2, 3]', ['proj.weight']);
  });
  return cases;
}

