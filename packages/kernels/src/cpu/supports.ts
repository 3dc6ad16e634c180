import { OP_KINDS, type OpKind, type OpNode } from '@zinfer/core';
import { ACTIVATION_FNS } from '../reference/activations.js';

/** The communication ops the cpu backend runs through the compile options' communicator / pipeline. */
export const COMMUNICATION_OPS: readonly OpKind[] = ['allReduce', 'allGather', 'send', 'recv'];

/** Every compute op of the op set with the four named activations, and the communication ops. */
export function supports(node: OpNode): boolean {
  if (COMMUNICATION_OPS.includes(node.op)) return true;
  if (!OP_KINDS.includes(node.op)) return false;
  if (node.op === 'activation' || node.op === 'gatedActivation') return ACTIVATION_FNS.includes(node.attrs.fn);
  return true;
}
