import { packageBuild } from '../../tsup.shared';

// rank-worker and data-parallel/dp-rank-worker are their own files: worker threads load it by URL. shims: import.meta.url in the CJS build.
export default packageBuild(['index', 'rank-worker', 'data-parallel/dp-rank-worker'], { shims: true });
