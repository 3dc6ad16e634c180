// The cpu backend's kernels (AssemblyScript → one .wasm; see scripts/build-wasm.mjs). Every exported
// k_* function takes (args, tid, nthreads): a pointer to its argument block in the shared memory, this
// thread's index and the number of threads running it; each kernel takes its own share of the work.
export { k_linear } from './linear';
export { k_add, k_activation, k_embedding, k_layer_norm, k_rms_norm, k_rotary } from './rows';
export { k_attention, k_kv_write } from './attention';
export { k_pack_panels } from './pack';
export { k_sample } from './sample';
