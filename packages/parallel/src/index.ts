// @zinfer/parallel: tensor-slicing and pipeline parallelism (ParallelStrategy, Communicator).
// Nothing is exported yet; the contract lives in @zinfer/core (contracts.ts).
export {};
