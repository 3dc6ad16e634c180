// @zinfer/parallel: tensor-slicing and pipeline parallelism, and the communicators under them.
export { createShmGroup, shmCommunicator, type ShmGroup } from './shm-communicator.js';
