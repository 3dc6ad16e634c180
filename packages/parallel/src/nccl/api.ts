// NCCL through koffi: the calls zinfer makes, each status turned into a BackendError that names the call,
// NCCL's words for the status and the communicator's last error. Device buffers are CUdeviceptr values
// (uint64, bigint); communicators and streams are opaque handles (bigint). Loaded once per thread.
import koffi, { type LibraryHandle } from 'koffi';
import { BackendError, type FloatDType } from '@zinfer/core';
import { findNccl, type NcclDiscovery } from './library.js';

type Out<T> = [T];

/** Bytes of ncclUniqueId (NCCL_UNIQUE_ID_BYTES): passed by value to ncclCommInitRank. */
export const UNIQUE_ID_BYTES = 128;

export interface NcclApi {
  ncclGetVersion(version: Out<number>): number;
  ncclGetUniqueId(id: Uint8Array): number;
  ncclCommInitRank(comm: Out<bigint | null>, nranks: number, id: { internal: Uint8Array }, rank: number): number;
  ncclCommDestroy(comm: bigint): number;
  ncclCommAbort(comm: bigint): number;
  ncclGetErrorString(status: number): string;
  ncclAllReduce(send: bigint, recv: bigint, count: number, dtype: number, op: number, comm: bigint, stream: bigint): number;
  ncclAllGather(send: bigint, recv: bigint, count: number, dtype: number, comm: bigint, stream: bigint): number;
  ncclSend(buf: bigint, count: number, dtype: number, peer: number, comm: bigint, stream: bigint): number;
  ncclRecv(buf: bigint, count: number, dtype: number, peer: number, comm: bigint, stream: bigint): number;
  ncclGroupStart(): number;
  ncclGroupEnd(): number;
  /** NCCL 2.13+: the last error's text on a communicator. */
  ncclGetLastError?: (comm: bigint | null) => string;
}

type Required_ = Exclude<keyof NcclApi, 'ncclGetLastError'>;

export const NCCL_PROTOTYPES: Record<Required_, string> = {
  ncclGetVersion: 'int ncclGetVersion(_Out_ int *version)',
  ncclGetUniqueId: 'int ncclGetUniqueId(_Out_ uint8_t *id)',
  ncclCommInitRank: 'int ncclCommInitRank(_Out_ void **comm, int nranks, ncclUniqueId id, int rank)',
  ncclCommDestroy: 'int ncclCommDestroy(void *comm)',
  ncclCommAbort: 'int ncclCommAbort(void *comm)',
  ncclGetErrorString: 'const char *ncclGetErrorString(int status)',
  ncclAllReduce: 'int ncclAllReduce(uint64_t send, uint64_t recv, size_t count, int dtype, int op, void *comm, void *stream)',
  ncclAllGather: 'int ncclAllGather(uint64_t send, uint64_t recv, size_t count, int dtype, void *comm, void *stream)',
  ncclSend: 'int ncclSend(uint64_t buf, size_t count, int dtype, int peer, void *comm, void *stream)',
  ncclRecv: 'int ncclRecv(uint64_t buf, size_t count, int dtype, int peer, void *comm, void *stream)',
  ncclGroupStart: 'int ncclGroupStart()',
  ncclGroupEnd: 'int ncclGroupEnd()',
};

/** ncclDataType_t of each activation dtype (nccl.h). */
export const NCCL_DTYPE: Record<FloatDType, number> = { f16: 6, f32: 7, bf16: 9 };
/** ncclRedOp_t. */
export const NCCL_OP = { sum: 0, max: 2 } as const;

const RESULT_NAMES = ['ncclSuccess', 'ncclUnhandledCudaError', 'ncclSystemError', 'ncclInternalError', 'ncclInvalidArgument', 'ncclInvalidUsage', 'ncclRemoteError', 'ncclInProgress'];

/** Oldest NCCL whose collectives and send/recv may be captured in CUDA graphs. */
const MIN_VERSION = 21100;

let loaded: Nccl | null = null;

export class Nccl {
  private constructor(readonly api: NcclApi, readonly path: string, readonly version: number) {}

  /**
   * Loads NCCL once for this thread. Two defaults unless the environment sets them, in place before NCCL
   * first reads its environment (the leader thread loads it first, and worker threads share its C
   * environment): NVLink multicast (NVLS) off; and no "direct pointer" P2P between ranks of this one
   * process, in which NCCL reads and writes a peer GPU's user buffers, which the CUDA backend takes from
   * a stream-ordered pool that other devices are not granted access to (ranks then use NCCL's own P2P
   * buffers, as separate processes would).
   */
  static load(options?: NcclDiscovery): Nccl {
    if (loaded) return loaded;
    process.env.NCCL_NVLS_ENABLE ??= '0';
    process.env.NCCL_P2P_DIRECT_DISABLE ??= '1';
    const path = findNccl(options);
    let api: NcclApi;
    try {
      api = bindNccl(koffi.load(path));
    } catch (e) {
      throw new BackendError(`cannot load NCCL from ${path}: ${(e as Error).message}`, { file: path });
    }
    const v: Out<number> = [0];
    const status = api.ncclGetVersion(v);
    if (status !== 0) throw new BackendError(`ncclGetVersion failed with status ${status}`, { file: path });
    if (v[0] < MIN_VERSION) throw new BackendError(`NCCL ${versionString(v[0])} at ${path} is too old`, { file: path, expected: `NCCL ${versionString(MIN_VERSION)} or newer (collectives in CUDA graphs)`, found: versionString(v[0]) });
    loaded = new Nccl(api, path, v[0]);
    return loaded;
  }

  get versionString(): string {
    return versionString(this.version);
  }

  /** Throws a BackendError naming `call`, the status and the communicator's last error unless status is ncclSuccess. */
  check(call: string, status: number, comm: bigint | null = null, context?: string): void {
    if (status === 0) return;
    const name = RESULT_NAMES[status] ?? `ncclResult ${status}`;
    let last = '';
    try {
      last = this.api.ncclGetLastError?.(comm) ?? '';
    } catch {
      // an aborted communicator may not answer
    }
    const text = this.api.ncclGetErrorString(status);
    throw new BackendError(`NCCL call ${call} failed with ${name}: ${text}${last ? ` (${last})` : ''}${context ? ` [${context}]` : ''}; NCCL_DEBUG=WARN prints more`, { found: `status ${status}` });
  }

  uniqueId(): Uint8Array {
    const id = new Uint8Array(UNIQUE_ID_BYTES);
    this.check('ncclGetUniqueId', this.api.ncclGetUniqueId(id));
    return id;
  }

  /** Joins a communicator; blocks until all `nranks` ranks have joined (call with the rank's device current). */
  initRank(nranks: number, id: Uint8Array, rank: number): bigint {
    if (id.length !== UNIQUE_ID_BYTES) throw new BackendError('an NCCL unique id has the wrong length', { expected: `${UNIQUE_ID_BYTES} bytes`, found: `${id.length}` });
    const comm: Out<bigint | null> = [null];
    this.check('ncclCommInitRank', this.api.ncclCommInitRank(comm, nranks, { internal: id }, rank), null, `rank ${rank} of ${nranks}`);
    if (comm[0] === null) throw new BackendError('ncclCommInitRank returned no communicator');
    return BigInt(comm[0]);
  }
}

function versionString(v: number): string {
  // 2.18.1 is 21801 (NCCL ≥ 2.9: major * 10000 + minor * 100 + patch).
  return `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`;
}

let uniqueIdType: unknown = null;

function bindNccl(lib: LibraryHandle): NcclApi {
  // Registered once per thread: koffi refuses a second type of the same name.
  uniqueIdType ??= koffi.struct('ncclUniqueId', { internal: koffi.array('uint8_t', UNIQUE_ID_BYTES) });
  const api: Partial<NcclApi> = {};
  for (const name of Object.keys(NCCL_PROTOTYPES) as Required_[]) {
    try {
      api[name] = lib.func(NCCL_PROTOTYPES[name]);
    } catch (e) {
      throw new Error(`it lacks ${name} (${(e as Error).message})`);
    }
  }
  try {
    api.ncclGetLastError = lib.func('const char *ncclGetLastError(void *comm)');
  } catch {
    // NCCL before 2.13: errors go without the communicator's detail
  }
  return api as NcclApi; // every required member was set above
}
