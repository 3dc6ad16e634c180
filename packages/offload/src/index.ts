// @zinfer/offload: ZeRO-Inference offload: OffloadTier plugins and the layer-streaming executor.
// Nothing is exported yet; the contract lives in @zinfer/core (contracts.ts).
export {};
