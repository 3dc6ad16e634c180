import { packageBuild } from '../../tsup.shared';

export default packageBuild(['index', 'cli', 'client', 'bench-serve', 'bench-serve-profile']);
