// probe(): which GPU the backend would run on, or null when this machine has no usable driver or device.
// Never throws: a machine without a GPU keeps working on the other backends.
import type { DeviceInfo } from '@zinfer/core';
import { CudaDevice } from './device.js';

export async function probeCuda(ordinal: number): Promise<DeviceInfo | null> {
  try {
    const device = CudaDevice.open(ordinal);
    const { free } = device.memInfo();
    return { device: `cuda:${ordinal}`, description: `${device.props.name} (sm_${device.props.arch}, ${device.props.multiprocessors} SMs)`, memoryBytes: free };
  } catch {
    return null;
  }
}

/** Why probe() returned null, for tools that want to tell the user (the error message), or null when it would not. */
export function probeFailure(ordinal: number): string | null {
  try {
    CudaDevice.open(ordinal);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
