// moeDispatch / moeCombine on the GPU: the expert-parallel all-to-all through DeviceCollectives.allToAll
// (NCCL grouped send/recv) with static, capacity-sized blocks, so the counts follow from the step's row
// count alone: nothing waits on the host and a decode step's CUDA graph captures the exchange. Each rank
// sends its whole share of the rows (capacity = share) rather than only the routed ones: the dispatched
// value is every row in row order, and rows not routed to this rank's experts add nothing in moeExperts.
// The combine returns each share's partial sums to the share's rank (summed in rank order, as the host
// backends do), then an all-gather of the padded shares re-assembles every row on every rank (summing the
// slices of a coordinated exchange).
import { BackendError, shareOf, type DeviceCollectives, type FloatDType, type MoeExchange, type OpNode } from '@zinfer/core';
import { dtypeBytes, type StepContext } from './step-context.js';

type ExchangeNode = OpNode<'moeDispatch' | 'moeCombine'>;

export function launchMoeExchange(ctx: StepContext, node: ExchangeNode, c: DeviceCollectives, dtype: FloatDType): void {
  if (!c.allToAll) throw new BackendError(`${node.op} needs DeviceCollectives.allToAll, which the ${c.library} collectives lack`, { field: 'communicator.device.allToAll', expected: 'a function', found: 'undefined' });
  if (node.op === 'moeCombine') return combine(ctx, node as OpNode<'moeCombine'>, c, dtype);
  const out = ctx.value(node.output);
  const rows = ctx.rowsOf(node.output);
  // Every rank holds the routing (stored as f32 in every mode: moeRoutingValues) and the rows stay in order.
  if (node.attrs.part === 'routing') return copy(ctx, 'f32', out, ctx.value(node.inputs.routing), rows * ctx.width(node.output));
  const ex = node.attrs.exchange;
  const w = ctx.width(node.inputs.x);
  const bytes = dtypeBytes(dtype);
  const lay = layout(ex, rows, ctx, node);
  const mine = lay.shares[lay.me];
  const n = (mine.end - mine.start) * w;
  // One copy of the share for each rank it goes to, one after another, as allToAll's send buffer wants.
  const send = ctx.scratch(Math.max(1, lay.peers.length * n) * bytes);
  const x = ctx.value(node.inputs.x) + BigInt(mine.start * w * bytes);
  lay.peers.forEach((_, j) => copy(ctx, dtype, send + BigInt(j * n * bytes), x, n));
  const sendCounts = lay.ranks.map((r) => (lay.peers.includes(r) ? n : 0));
  const recvCounts = lay.ranks.map((r) => (lay.peers.includes(r) ? (lay.shares[r].end - lay.shares[r].start) * w : 0));
  ctx.gpu.external(`moeDispatch all-to-all of ${n} ${dtype} a peer`, [{ ptr: send, bytes: lay.peers.length * n * bytes }, { ptr: out, bytes: rows * w * bytes }], (stream) => c.allToAll!(send, out, sendCounts, recvCounts, dtype, stream));
}

function combine(ctx: StepContext, node: OpNode<'moeCombine'>, c: DeviceCollectives, dtype: FloatDType): void {
  const ex = node.attrs.exchange;
  const rows = ctx.rowsOf(node.output);
  const w = ctx.width(node.output);
  const bytes = dtypeBytes(dtype);
  const lay = layout(ex, rows, ctx, node);
  const len = (r: number) => lay.shares[r].end - lay.shares[r].start;
  const cap = Math.max(...lay.ranks.map(len)); // padded share: the all-gather needs equal counts
  const k = lay.peers.length;
  // Scratch: [k, cap, w] partials landing from the peers, then [size, cap, w] gathered shares.
  const landing = ctx.scratch(Math.max(1, (k + 1 + ex.ranks) * cap * w) * bytes);
  const gathered = landing + BigInt((k + 1) * cap * w * bytes);
  const block = (base: bigint, i: number) => base + BigInt(i * cap * w * bytes);
  const y = ctx.value(node.inputs.x);
  const sendCounts = lay.ranks.map((r) => (lay.peers.includes(r) ? len(r) * w : 0));
  const recvCounts = lay.ranks.map((r) => (lay.peers.includes(r) ? len(lay.me) * w : 0));
  // y's rows are in row order, so the peers' shares are already consecutive blocks of it; the landing
  // blocks are len(me) rows apart, the all-gather's cap rows apart.
  ctx.gpu.external(`moeCombine all-to-all of ${len(lay.me) * w} ${dtype} a peer`, [{ ptr: y, bytes: rows * w * bytes }, { ptr: landing, bytes: k * cap * w * bytes }], (stream) => c.allToAll!(y + BigInt(firstRow(lay) * w * bytes), landing, sendCounts, recvCounts, dtype, stream));
  const n = len(lay.me) * w;
  for (let j = 1; j < k; j++) add(ctx, dtype, landing, landing, landing + BigInt(j * n * bytes), n);
  ctx.gpu.external(`moeCombine all-gather of ${cap * w} ${dtype} a rank`, [{ ptr: landing, bytes: cap * w * bytes }, { ptr: gathered, bytes: ex.ranks * cap * w * bytes }], (stream) => c.allGather(landing, gathered, cap * w, dtype, stream));
  const out = ctx.value(node.output);
  const done = new Set<number>();
  for (const r of lay.ranks) {
    const s = lay.shares[r];
    const m = (s.end - s.start) * w;
    // An empty share (fewer rows than shares: a decode step) starts where the next one does; marking its
    // start done would make the next share add onto the stale output instead of copying (issue #7).
    if (m === 0) continue;
    const dst = out + BigInt(s.start * w * bytes);
    if (done.has(s.start)) add(ctx, dtype, dst, dst, block(gathered, r), m); // coordinated: another slice of the share
    else copy(ctx, dtype, dst, block(gathered, r), m);
    done.add(s.start);
  }
}

interface Layout {
  me: number;
  ranks: number[];
  shares: { start: number; end: number }[];
  /** The ranks this rank exchanges with, itself included, in rank order. */
  peers: number[];
}

function layout(ex: MoeExchange, rows: number, ctx: StepContext, node: ExchangeNode): Layout {
  const me = rankOf(ctx, node);
  const ranks = Array.from({ length: ex.ranks }, (_, r) => r);
  const peers = ranks.filter((r) => !ex.coordinated || r % ex.slices === me % ex.slices);
  return { me, ranks, shares: ranks.map((r) => shareOf(ex, rows, r)), peers };
}

/** The first row of the first peer's share (the peers' shares are consecutive from there). */
function firstRow(lay: Layout): number {
  return lay.shares[lay.peers[0]].start;
}

function rankOf(ctx: StepContext, node: ExchangeNode): number {
  const rank = ctx.collectives.rank;
  if (rank === undefined) throw new BackendError(`${node.op} needs the program's rank (compile options' communicator)`);
  return rank;
}

function copy(ctx: StepContext, dtype: FloatDType, dst: bigint, src: bigint, n: number): void {
  if (n > 0) ctx.gpu.launch(`copy_${dtype}`, grid(n), 256, [dst, src, n]);
}

function add(ctx: StepContext, dtype: FloatDType, dst: bigint, a: bigint, b: bigint, n: number): void {
  if (n > 0) ctx.gpu.launch(`add_${dtype}`, grid(n), 256, [dst, a, b, n]);
}

function grid(n: number): { x: number } {
  return { x: Math.max(1, Math.min(8192, Math.ceil(n / 256))) };
}
