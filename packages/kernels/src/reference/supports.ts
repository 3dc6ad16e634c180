import { COLLECTIVE_KINDS, MOE_KINDS, OP_KINDS, type OpNode } from '@zinfer/core';
import { ACTIVATION_FNS } from './activations.js';

/**
 * Every op of the op set, with any attrs the op set can express (activations: the four named ones), and
 * the collectives (run through the compile options' communicator).
 */
export function supports(node: OpNode): boolean {
  if (COLLECTIVE_KINDS.includes(node.op)) return true;
  if (!OP_KINDS.includes(node.op) && !MOE_KINDS.includes(node.op)) return false;
  if (node.op === 'activation' || node.op === 'gatedActivation' || node.op === 'moeExperts') return ACTIVATION_FNS.includes(node.attrs.fn);
  return true;
}
