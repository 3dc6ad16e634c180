// Opening the offload file for direct reads (O_DIRECT: NVMe to pinned memory, no page-cache copy) where
// the filesystem allows it. JavaScript cannot see a buffer's address, so the aligned start inside an
// over-allocated buffer is found by probing: the kernel refuses (EINVAL) a direct read into a misaligned one.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ALIGN } from './align.js';

export interface ReadHandle {
  fh: FileHandle;
  direct: boolean;
}

export async function openForRead(path: string, tryDirect = true): Promise<ReadHandle> {
  const flag = (constants as Record<string, number>).O_DIRECT;
  if (tryDirect && flag) {
    try {
      return { fh: await open(path, constants.O_RDONLY | flag), direct: true };
    } catch (e) {
      if (!isEinval(e)) throw e; // tmpfs and some others do not do direct I/O
    }
  }
  return { fh: await open(path, 'r'), direct: false };
}

/** Offset into `buffer` (within its first ALIGN bytes) where direct reads work; null when none does. */
export async function probeAlignment(fh: FileHandle, buffer: ArrayBuffer): Promise<number | null> {
  for (let o = 0; o + ALIGN <= buffer.byteLength && o < ALIGN; o += 16) {
    try {
      await fh.read(new Uint8Array(buffer, o, ALIGN), 0, ALIGN, 0);
      return o;
    } catch (e) {
      if (!isEinval(e)) throw e;
    }
  }
  return null;
}

export function isEinval(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'EINVAL';
}
