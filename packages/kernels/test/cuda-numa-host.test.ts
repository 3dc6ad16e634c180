import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pciNumaNode } from '../src/cuda/numa-host.js';

function fakeSys(nodes: number, gpuNode: string | null): string {
  const sys = mkdtempSync(join(tmpdir(), 'zinfer-sys-'));
  for (let n = 0; n < nodes; n++) mkdirSync(join(sys, 'devices/system/node', `node${n}`), { recursive: true });
  writeFileSync(join(sys, 'devices/system/node/online'), `0-${nodes - 1}\n`);
  if (gpuNode !== null) {
    mkdirSync(join(sys, 'bus/pci/devices/0000:1a:00.0'), { recursive: true });
    writeFileSync(join(sys, 'bus/pci/devices/0000:1a:00.0/numa_node'), `${gpuNode}\n`);
  }
  return sys;
}

test('pciNumaNode: the PCI device node on a host of several nodes (bus id case-insensitive)', () => {
  const sys = fakeSys(2, '1');
  assert.is(pciNumaNode('0000:1A:00.0', sys), 1);
  rmSync(sys, { recursive: true, force: true });
});

test('pciNumaNode: null where binding cannot help or is unknown (one node, -1, no device)', () => {
  for (const [nodes, node] of [[1, '0'], [2, '-1'], [2, null]] as const) {
    const sys = fakeSys(nodes, node);
    assert.is(pciNumaNode('0000:1a:00.0', sys), null, `${nodes} nodes, numa_node ${node}`);
    rmSync(sys, { recursive: true, force: true });
  }
});

test.run();
