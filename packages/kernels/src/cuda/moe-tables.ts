// A program's Mixture-of-Experts device state: for each moeExperts node, a table of its local experts'
// matrix pointers and the global id → local index map (the kernels find a routed expert's weights on the
// device, so no step waits for the host to read the routing); and one u64 counter per expert per
// moeRouter node, which the router kernel increments for each token it routes (Program.expertLoad).
// Tables are written on a node's first launch and rewritten only when a pointer changes (streamed
// weights move between slots; such steps are never captured), so a captured graph's table stays valid.
import { BackendError, type Graph, type OpNode } from '@zinfer/core';
import type { Gpu } from './gpu.js';
import type { StepContext } from './step-context.js';

interface Table {
  ptr: bigint;
  host: BigInt64Array;
  mapLen: number;
}

export class MoeTables {
  private readonly tables = new Map<OpNode, Table>();
  private readonly routers: OpNode<'moeRouter'>[];
  private readonly offsets = new Map<OpNode, number>();
  private readonly totalExperts: number;
  private countsPtr: bigint | null = null;
  /** The split router's scratch: logits [rows, experts] f32, then its row counters (zeroed once; launches leave them zero). */
  private splitScratch: { ptr: bigint; rows: number; experts: number } | null = null;
  /** moeExperts nodes whose dense or grouped GEMMs cuBLASLt refused (moe-dense.ts, moe-grouped-gemm.ts): the tile path from then on. */
  readonly denseRefused = new Set<OpNode>();

  /** padSlot: the KV slot of a decode graph's padding rows (not counted), or -1 when there are none. */
  constructor(private readonly gpu: Gpu, graph: Graph, readonly padSlot: number) {
    this.routers = graph.nodes.filter((n): n is OpNode<'moeRouter'> => n.op === 'moeRouter');
    let total = 0;
    for (const r of this.routers) {
      this.offsets.set(r, total);
      total += r.attrs.experts;
    }
    this.totalExperts = total;
  }

  /**
   * Device address of the node's expert table (i64 gate, up, down per local expert, then the int map), and the
   * map itself (global expert id → local index, -1 where not held) as the host wrote it.
   */
  table(ctx: StepContext, node: OpNode<'moeExperts'>): { ptr: bigint; nLocal: number; mapLen: number; map: Int32Array } {
    const experts = node.attrs.experts;
    const mapLen = Math.max(1, ...experts.map((e) => e.id + 1));
    const words = 3 * experts.length + Math.ceil(mapLen / 2); // the map's int32s packed two to an i64
    const host = new BigInt64Array(words);
    const map = new Int32Array(host.buffer, 3 * experts.length * 8, mapLen).fill(-1);
    experts.forEach((e, i) => {
      if (map[e.id] !== -1) throw new BackendError(`moeExperts lists expert ${e.id} twice`, { field: 'attrs.experts', found: String(e.id) });
      map[e.id] = i;
      host[3 * i] = BigInt.asIntN(64, ctx.weight(e.gate).ptr);
      host[3 * i + 1] = BigInt.asIntN(64, ctx.weight(e.up).ptr);
      host[3 * i + 2] = BigInt.asIntN(64, ctx.weight(e.down).ptr);
    });
    let t = this.tables.get(node);
    if (!t) {
      t = { ptr: this.gpu.alloc(words * 8, `expert table (${experts.length} experts)`), host: new BigInt64Array(words).fill(-1n), mapLen };
      this.tables.set(node, t);
    }
    if (!sameWords(t.host, host)) {
      this.gpu.upload(t.ptr, host);
      t.host = host;
    }
    return { ptr: t.ptr, nLocal: experts.length, mapLen, map };
  }

  /** Device address of a router node's expert counters (allocated and zeroed on first use). */
  counters(node: OpNode<'moeRouter'>): bigint {
    const offset = this.offsets.get(node);
    if (offset === undefined) throw new BackendError('moeRouter node is not part of the compiled graph');
    if (this.countsPtr === null) {
      this.countsPtr = this.gpu.alloc(this.totalExperts * 8, `expert load counters (${this.totalExperts} experts)`);
      this.gpu.fill32(this.countsPtr, 0, this.totalExperts * 2);
    }
    return this.countsPtr + BigInt(offset * 8);
  }

  /**
   * The split router's logits [ROUTER_SPLIT_MAX_ROWS, experts] and row counters (moe-router.cu
   * moe_router_split), shared by the program's router launches: one runs at a time.
   */
  splitRouterScratch(rows: number, experts: number): { logits: bigint; done: bigint } {
    const s = this.splitScratch;
    if (!s || s.rows < rows || s.experts < experts) {
      if (s) this.gpu.free(s.ptr);
      const [r, e] = [Math.max(rows, s?.rows ?? 0), Math.max(experts, s?.experts ?? 0)];
      const ptr = this.gpu.alloc((r * e + r) * 4, `split router scratch (${r} rows × ${e} experts)`);
      this.gpu.fill32(ptr + BigInt(r * e * 4), 0, r);
      this.splitScratch = { ptr, rows: r, experts: e };
    }
    const { ptr, rows: r, experts: e } = this.splitScratch!;
    return { logits: ptr, done: ptr + BigInt(r * e * 4) };
  }

  /** Tokens routed to each expert so far, one array per moeRouter node in graph order (waits for the stream). */
  load(): Float64Array[] {
    const counts = new BigUint64Array(this.totalExperts);
    if (this.countsPtr !== null && this.totalExperts > 0) this.gpu.download(counts, this.countsPtr);
    return this.routers.map((r) => Float64Array.from(counts.subarray(this.offsets.get(r)!, this.offsets.get(r)! + r.attrs.experts), Number));
  }

  dispose(): void {
    for (const t of this.tables.values()) this.gpu.free(t.ptr);
    this.tables.clear();
    if (this.countsPtr !== null) this.gpu.free(this.countsPtr);
    this.countsPtr = null;
    if (this.splitScratch) this.gpu.free(this.splitScratch.ptr);
    this.splitScratch = null;
  }
}

function sameWords(a: BigInt64Array, b: BigInt64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
