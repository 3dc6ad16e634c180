// A rank in a worker thread: all-reduces a rank-dependent vector and posts the result back.
import { parentPort, workerData } from 'node:worker_threads';
import { shmCommunicator, type ShmGroup } from '../../src/shm-communicator.js';

const { group, rank, length } = workerData as { group: ShmGroup; rank: number; length: number };
const comm = shmCommunicator(group, rank);
const buf = Float32Array.from({ length }, (_, i) => (rank + 1) * 0.5 + i * 1e-3);
await comm.allReduce(buf);
parentPort!.postMessage(buf);
