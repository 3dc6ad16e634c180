// Rotary embedding parameters from config.json, in both the older form (rope_theta, rope_scaling,
// rotary_pct) and the transformers-5 form (rope_parameters). Scaling is folded into invFreq here, once,
// so every backend's rotary kernel stays the same simple one.
import { UnsupportedModelError } from './errors.js';
import type { ConfigReader } from './model-config.js';
import type { RotaryAttrs } from './ops.js';

export interface RopeSettings {
  theta: number;
  partialFactor: number;
  type: string;
  scaling: ConfigReader | null;
}

/** Reads rope settings; `defaultTheta` and the legacy theta field differ per architecture. */
export function readRope(cfg: ConfigReader, opts: { defaultTheta?: number; legacyThetaField?: string; legacyPartialField?: string } = {}): RopeSettings {
  const params = cfg.object('rope_parameters');
  if (params) {
    return {
      theta: params.num('rope_theta', opts.defaultTheta ?? 10000),
      partialFactor: params.num('partial_rotary_factor', cfg.has('partial_rotary_factor') ? cfg.num('partial_rotary_factor') : 1),
      type: params.str(params.pick('rope_type', 'type'), 'default'),
      scaling: params,
    };
  }
  const scaling = cfg.object('rope_scaling');
  const thetaField = cfg.pick('rope_theta', opts.legacyThetaField ?? 'rope_theta');
  const partialField = cfg.pick('partial_rotary_factor', opts.legacyPartialField ?? 'partial_rotary_factor');
  return {
    theta: cfg.num(thetaField, opts.defaultTheta ?? 10000),
    partialFactor: cfg.num(partialField, 1),
    type: scaling ? scaling.str(scaling.pick('rope_type', 'type'), 'default') : 'default',
    scaling,
  };
}

export function rotaryAttrs(rope: RopeSettings, heads: number, headDim: number): RotaryAttrs {
  let rotaryDim = Math.floor(headDim * rope.partialFactor);
  rotaryDim -= rotaryDim % 2;
  const invFreq: number[] = [];
  for (let i = 0; i < rotaryDim; i += 2) invFreq.push(1 / rope.theta ** (i / rotaryDim));
  return { heads, headDim, rotaryDim, invFreq: scale(invFreq, rope), attentionScaling: 1, interleaved: false };
}

function scale(invFreq: number[], rope: RopeSettings): number[] {
  const s = rope.scaling;
  switch (rope.type) {
    case 'default':
      return invFreq;
    case 'linear':
      return invFreq.map((f) => f / s!.num('factor'));
    case 'llama3':
      return llama3(invFreq, s!);
    default:
      throw new UnsupportedModelError('rope scaling type is not supported', {
        file: s?.file, field: 'rope_type', expected: 'default, linear or llama3', found: rope.type,
      });
  }
}

/** Llama 3.1's frequency-dependent scaling: long wavelengths slowed by `factor`, short kept, smooth between. */
function llama3(invFreq: number[], s: ConfigReader): number[] {
  const factor = s.num('factor');
  const low = s.num('low_freq_factor');
  const high = s.num('high_freq_factor');
  const oldCtx = s.num('original_max_position_embeddings');
  const lowWavelen = oldCtx / low;
  const highWavelen = oldCtx / high;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / factor;
    const smooth = (oldCtx / wavelen - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}
