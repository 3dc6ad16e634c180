// The offload file: written once by place() (one aligned region per group), then only read. Each group
// read checks the file is still the one written (inode, size, mtime) and that every byte arrived, so a
// truncated, rewritten or deleted file fails the step with the file and group named.
import { closeSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { ALIGN } from './align.js';
import { openForRead, probeAlignment, type ReadHandle } from './direct-io.js';
import { OffloadFileError } from './offload-file-error.js';

/** Reads larger than this are split, so one group read keeps several libuv pool threads (and NVMe queues) busy. */
const CHUNK = 8 * 2 ** 20;

export interface AlignedBuffer {
  buffer: ArrayBuffer;
  /** Where the usable, aligned bytes start. */
  base: number;
}

export class DiskFile {
  private writer: FileHandle | null;
  private reader: ReadHandle | null = null;
  private identity: { ino: number; size: number; mtimeMs: number } | null = null;
  /** Buffered descriptor for synchronous read-backs (resident layers handed to compile). */
  private syncFd: number | null = null;
  /** Bytes written so far (always a multiple of ALIGN). */
  size = 0;

  private constructor(readonly path: string, writer: FileHandle) {
    this.writer = writer;
  }

  static async create(path: string): Promise<DiskFile> {
    return new DiskFile(path, await open(path, 'wx'));
  }

  get direct(): boolean {
    return this.reader?.direct ?? false;
  }

  /** Appends one region (a multiple of ALIGN bytes); returns its file offset. */
  async append(region: Uint8Array): Promise<number> {
    if (!this.writer) throw new Error('the offload file is sealed');
    const at = this.size;
    for (let done = 0; done < region.byteLength; ) {
      const { bytesWritten } = await this.writer.write(region, done, region.byteLength - done, at + done);
      done += bytesWritten;
    }
    this.size += region.byteLength;
    return at;
  }

  /** Ends writing; reads from now on go through a direct handle where the filesystem allows it. */
  async seal(tryDirect: boolean): Promise<void> {
    const w = this.writer!;
    this.writer = null;
    await w.datasync();
    await w.close();
    const s = await stat(this.path);
    this.identity = { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
    this.reader = await openForRead(this.path, tryDirect);
  }

  /** A read buffer of `bytes` usable bytes, aligned for direct reads (or direct reads turned off). */
  async alignedBuffer(alloc: (bytes: number) => ArrayBuffer, bytes: number): Promise<AlignedBuffer> {
    const buffer = alloc(bytes + ALIGN);
    if (!this.reader?.direct || this.size < ALIGN) return { buffer, base: 0 };
    const base = await probeAlignment(this.reader.fh, buffer);
    if (base !== null) return { buffer, base };
    await this.reader.fh.close(); // no aligned start found: read through the page cache instead
    this.reader = await openForRead(this.path, false);
    return { buffer, base: 0 };
  }

  /** Reads `dst.byteLength` bytes at `offset` into dst (aligned when the handle is direct). */
  async read(offset: number, dst: Uint8Array, group: number): Promise<void> {
    await this.checkIdentity(group);
    const fh = this.reader!.fh;
    const parts: Promise<void>[] = [];
    for (let at = 0; at < dst.byteLength; at += CHUNK) {
      const len = Math.min(CHUNK, dst.byteLength - at);
      parts.push(fh.read(dst, at, len, offset + at).then(({ bytesRead }) => {
        if (bytesRead !== len) throw this.error('short read from the offload file', group, `${bytesRead} of ${len} bytes at offset ${offset + at}`);
      }));
    }
    await Promise.all(parts);
  }

  private async checkIdentity(group: number): Promise<void> {
    let s: Stats;
    try {
      s = await stat(this.path);
    } catch {
      throw this.error('the offload file is missing', group, 'no file');
    }
    this.compare(s, group);
  }

  private compare(s: Stats, group: number): void {
    const want = this.identity;
    if (!want) throw this.error('the offload file was read before place() finished writing it', group, 'unsealed');
    if (s.ino !== want.ino || s.size !== want.size || s.mtimeMs !== want.mtimeMs) {
      throw this.error('the offload file changed after it was written', group, `size ${s.size} (wrote ${want.size}), inode ${s.ino}, mtime ${s.mtimeMs}`);
    }
  }

  /** A synchronous, buffered read of one region into fresh memory (WeightSource.get is synchronous). */
  readSync(offset: number, bytes: number, group: number): ArrayBuffer {
    let s: Stats;
    try {
      s = statSync(this.path);
    } catch {
      throw this.error('the offload file is missing', group, 'no file');
    }
    this.compare(s, group);
    this.syncFd ??= openSync(this.path, 'r');
    const out = new Uint8Array(bytes);
    for (let done = 0; done < bytes; ) {
      const n = readSync(this.syncFd, out, done, bytes - done, offset + done);
      if (n === 0) throw this.error('short read from the offload file', group, `${done} of ${bytes} bytes at offset ${offset}`);
      done += n;
    }
    return out.buffer;
  }

  private error(message: string, group: number, found: string): OffloadFileError {
    return new OffloadFileError(message, group, { file: this.path, expected: 'the file as place() wrote it', found });
  }

  async close(): Promise<void> {
    await this.writer?.close();
    await this.reader?.fh.close();
    if (this.syncFd !== null) closeSync(this.syncFd);
    this.syncFd = null;
    this.writer = null;
    this.reader = null;
  }
}
