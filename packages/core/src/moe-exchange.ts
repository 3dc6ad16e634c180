// The all-to-all dispatch and combine of expert parallelism (ops moeDispatch / moeCombine) on host
// buffers through a Communicator, shared by the host backends. Which rows go where follows from the
// routing alone, and every rank holds the same routing, so each rank computes every rank's send and
// receive lists itself and the exchange needs no count messages. Sums run in rank order, so every rank
// gets bit-identical rows.
import type { Communicator } from './contracts.js';
import { BackendError } from './errors.js';
import type { MoeExchange } from './ops.js';

/** Rows [start, end) of a step's `rows` that `rank` takes. */
export function shareOf(ex: MoeExchange, rows: number, rank: number): { start: number; end: number } {
  const parts = ex.coordinated ? ex.ranks / ex.slices : ex.ranks;
  const p = ex.coordinated ? Math.floor(rank / ex.slices) : rank;
  return { start: Math.floor((p * rows) / parts), end: Math.floor(((p + 1) * rows) / parts) };
}

/** Rows (in order) that rank `src` sends to rank `dst`: those of its share routed to an expert of dst's group. */
export function exchangeRows(ex: MoeExchange, routing: Float32Array, topK: number, src: number, dst: number): number[] {
  if (ex.coordinated && dst % ex.slices !== src % ex.slices) return [];
  const group = Math.floor(dst / ex.slices);
  const { start, end } = shareOf(ex, routing.length / (2 * topK), src);
  const rows: number[] = [];
  for (let r = start; r < end; r++) {
    for (let k = 0; k < topK; k++) {
      if (ex.owner[routing[r * 2 * topK + k]] === group) {
        rows.push(r);
        break;
      }
    }
  }
  return rows;
}

function lists(ex: MoeExchange, routing: Float32Array, topK: number, me: number) {
  const ranks = Array.from({ length: ex.ranks }, (_, r) => r);
  return { sent: ranks.map((d) => exchangeRows(ex, routing, topK, me, d)), received: ranks.map((s) => exchangeRows(ex, routing, topK, s, me)) };
}

function checkGroup(comm: Communicator, ex: MoeExchange): void {
  if (comm.size !== ex.ranks) throw new BackendError(`MoE exchange over ${ex.ranks} ranks on a communicator of ${comm.size}`, { field: 'communicator.size', expected: String(ex.ranks), found: String(comm.size) });
}

/** Copies the listed rows of src [*, width] one after another into a new buffer. */
function gather(src: Float32Array, width: number, rows: readonly number[][], into?: Float32Array): Float32Array {
  const out = into ?? new Float32Array(rows.reduce((a, l) => a + l.length, 0) * width);
  let at = 0;
  for (const list of rows) for (const r of list) out.set(src.subarray(r * width, (r + 1) * width), (at++) * width);
  return out;
}

/** moeDispatch: this rank's received rows of x (part 'x') or of the routing (part 'routing'), then zeros. */
export async function hostMoeDispatch(comm: Communicator, ex: MoeExchange, x: Float32Array, width: number, routing: Float32Array, topK: number, part: 'x' | 'routing'): Promise<Float32Array> {
  checkGroup(comm, ex);
  const rows = routing.length / (2 * topK);
  const { sent, received } = lists(ex, routing, topK, comm.rank);
  const got = received.reduce((a, l) => a + l.length, 0);
  if (got > rows) throw new BackendError(`MoE dispatch: rank ${comm.rank} receives ${got} rows, capacity ${rows} (plan bug)`);
  if (part === 'routing') return gather(routing, 2 * topK, received, new Float32Array(rows * 2 * topK));
  const send = gather(x, width, sent);
  const out = new Float32Array(rows * width);
  await comm.allToAll(send, out.subarray(0, got * width), sent.map((l) => l.length * width), received.map((l) => l.length * width));
  return out;
}

/** moeCombine: returns each computed row to its share's rank, sums the parts, and re-assembles every row. */
export async function hostMoeCombine(comm: Communicator, ex: MoeExchange, y: Float32Array, width: number, routing: Float32Array, topK: number): Promise<Float32Array> {
  checkGroup(comm, ex);
  const rows = routing.length / (2 * topK);
  const me = comm.rank;
  const { sent, received } = lists(ex, routing, topK, me);
  const back = new Float32Array(sent.reduce((a, l) => a + l.length, 0) * width);
  const got = received.reduce((a, l) => a + l.length, 0);
  await comm.allToAll(y.subarray(0, got * width), back, received.map((l) => l.length * width), sent.map((l) => l.length * width));
  const share = shareOf(ex, rows, me);
  const part = new Float32Array((share.end - share.start) * width);
  let at = 0;
  for (const list of sent) {
    for (const r of list) {
      const dst = (r - share.start) * width;
      for (let i = 0; i < width; i++) part[dst + i] += back[at * width + i];
      at++;
    }
  }
  return assemble(comm, ex, part, width, rows);
}

/** Every rank sends its share's (partial) rows to every rank; each row is the rank-order sum of its parts. */
async function assemble(comm: Communicator, ex: MoeExchange, part: Float32Array, width: number, rows: number): Promise<Float32Array> {
  const shares = Array.from({ length: ex.ranks }, (_, r) => shareOf(ex, rows, r));
  const counts = shares.map((s) => (s.end - s.start) * width);
  const send = new Float32Array(part.length * ex.ranks);
  for (let r = 0; r < ex.ranks; r++) send.set(part, r * part.length);
  const recv = new Float32Array(counts.reduce((a, b) => a + b, 0));
  await comm.allToAll(send, recv, shares.map(() => part.length), counts);
  const out = new Float32Array(rows * width);
  let at = 0;
  for (const s of shares) {
    const base = s.start * width;
    const n = (s.end - s.start) * width;
    for (let i = 0; i < n; i++) out[base + i] += recv[at + i];
    at += n;
  }
  return out;
}
