import { packageBuild } from '../../tsup.shared';

// rank-worker is its own file: worker threads load it by URL. shims: import.meta.url in the CJS build.
export default packageBuild(['index', 'rank-worker'], { shims: true });
