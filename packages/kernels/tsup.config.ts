import { packageBuild } from '../../tsup.shared';

// shims: the cpu backend finds its .wasm through import.meta.url, also in the CJS build.
export default packageBuild(['index', 'reference', 'cpu', 'cuda'], { shims: true });
