import { COLLECTIVE_KINDS, OP_KINDS, type OpNode } from '@zinfer/core';
import { ACTIVATION_FNS } from '../reference/activations.js';

/** Every compute op of the op set with the four named activations, and the communication ops. */
export function supports(node: OpNode): boolean {
  if (COLLECTIVE_KINDS.includes(node.op)) return true; // through the compile options' communicator / pipeline
  if (!OP_KINDS.includes(node.op)) return false;
  if (node.op === 'activation' || node.op === 'gatedActivation') return ACTIVATION_FNS.includes(node.attrs.fn);
  return true;
}
