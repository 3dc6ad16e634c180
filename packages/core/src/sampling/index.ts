export { DEFAULT_SAMPLING, validateSampling, type SamplingParams } from './params.js';
export { Rng } from './rng.js';
export { Sampler } from './sampler.js';
export { checkHistory, TokenFilter, type FilterParams } from './token-filter.js';
export { checkSampleRows, GREEDY_ROW, HostRowSampler } from './sample-rows.js';
