// @zinfer/moe: Mixture-of-Experts gating, ExpertPlacement plugins and expert-parallel dispatch.
// Nothing is exported yet; the contract lives in @zinfer/core (contracts.ts).
export {};
