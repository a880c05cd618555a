// Rotary position embeddings (HF "rotate_half" layout): frequency tables for the default, linear,
// llama3 and yarn variants exactly as transformers' ROPE_INIT_FUNCTIONS computes them, the config
// parser for v4 (`rope_theta` + `rope_scaling`) and v5 (`rope_parameters`) config.json files, and the
// differentiable rope op.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import { emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

// ---- configuration ------------------------------------------------------------------------------------

export type RopeScalingType = 'default' | 'linear' | 'llama3' | 'yarn' | 'dynamic';

export type RopeConfig = {
  theta: number;
  partialRotaryFactor?: number;
  scaling?: {
    type: RopeScalingType;
    factor?: number;
    lowFreqFactor?: number;
    highFreqFactor?: number;
    originalMaxPositionEmbeddings?: number;
    betaFast?: number;
    betaSlow?: number;
    attentionFactor?: number;
    mscale?: number;
    mscaleAllDim?: number;
    truncate?: boolean;
  };
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optNumber(where: Record<string, unknown>, key: string): number | undefined {
  const v = where[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new Error(`lorakit: config key ${key} must be a number, got ${JSON.stringify(v)}.`);
  return v;
}

function needNumber(value: number | undefined, type: string, key: string): number {
  if (value === undefined) throw new Error(`lorakit: rope type ${type} needs ${key} in the model config.`);
  return value;
}

/**
 * Reads the RoPE settings of a Hugging Face config.json object, v4 style (`rope_theta`, `rope_scaling`
 * with `type` or `rope_type`, `partial_rotary_factor`) or v5 style (`rope_parameters`), resolving the
 * defaults transformers fills in (theta 10000; `original_max_position_embeddings` from the top level or
 * `max_position_embeddings`; yarn's factor from their ratio).
 */
export function parseRopeConfig(config: Record<string, unknown>, headDim: number): RopeConfig {
  // transformers 5: `rope_parameters = rope_scaling or rope_parameters`
  const params: Record<string, unknown> = isRecord(config.rope_scaling)
    ? config.rope_scaling
    : isRecord(config.rope_parameters)
      ? config.rope_parameters
      : {};
  const typeValue = params.rope_type ?? params.type ?? 'default';
  if (typeof typeValue !== 'string')
    throw new Error(`lorakit: config rope type must be a string, got ${JSON.stringify(typeValue)}.`);
  if (params.rope_type === undefined && params.type === undefined && Object.values(params).some(isRecord))
    throw new Error('lorakit: per-layer-type rope_parameters are not supported.');
  const theta = optNumber(params, 'rope_theta') ?? optNumber(config, 'rope_theta') ?? 10000;
  const partialRotaryFactor =
    optNumber(params, 'partial_rotary_factor') ?? optNumber(config, 'partial_rotary_factor');
  const rotary = Math.trunc(headDim * (partialRotaryFactor ?? 1));
  if (!Number.isInteger(headDim) || rotary < 2 || rotary % 2 !== 0)
    throw new Error(
      `lorakit: rotary dimension ${rotary} (head_dim ${headDim} × partial_rotary_factor ${partialRotaryFactor ?? 1}) must be a positive even number.`,
    );
  const base: RopeConfig = partialRotaryFactor === undefined ? { theta } : { theta, partialRotaryFactor };
  const maxPositions = optNumber(config, 'max_position_embeddings');
  // transformers gives a top-level original_max_position_embeddings priority (Phi-3 style configs).
  const original =
    optNumber(config, 'original_max_position_embeddings') ??
    optNumber(params, 'original_max_position_embeddings') ??
    maxPositions;
  const factor = optNumber(params, 'factor');
  switch (typeValue) {
    case 'default':
      return base;
    case 'linear':
      return { ...base, scaling: { type: 'linear', factor: needNumber(factor, typeValue, 'factor') } };
    case 'dynamic':
      // Equals the default rope up to max_position_embeddings (transformers only rescales beyond it).
      return {
        ...base,
        scaling: {
          type: 'dynamic',
          factor: needNumber(factor, typeValue, 'factor'),
          originalMaxPositionEmbeddings: needNumber(maxPositions, typeValue, 'max_position_embeddings'),
        },
      };
    case 'llama3':
      return {
        ...base,
        scaling: {
          type: 'llama3',
          factor: needNumber(factor, typeValue, 'factor'),
          lowFreqFactor: needNumber(optNumber(params, 'low_freq_factor'), typeValue, 'low_freq_factor'),
          highFreqFactor: needNumber(optNumber(params, 'high_freq_factor'), typeValue, 'high_freq_factor'),
          originalMaxPositionEmbeddings: needNumber(original, typeValue, 'original_max_position_embeddings'),
        },
      };
    case 'yarn': {
      const orig = needNumber(original, typeValue, 'original_max_position_embeddings');
      const truncate = params.truncate;
      if (truncate !== undefined && truncate !== null && typeof truncate !== 'boolean')
        throw new Error(`lorakit: config key truncate must be a boolean, got ${JSON.stringify(truncate)}.`);
      const scaling: NonNullable<RopeConfig['scaling']> = {
        type: 'yarn',
        factor: factor ?? needNumber(maxPositions, typeValue, 'factor or max_position_embeddings') / orig,
        originalMaxPositionEmbeddings: orig,
      };
      const optional = {
        betaFast: optNumber(params, 'beta_fast'),
        betaSlow: optNumber(params, 'beta_slow'),
        attentionFactor: optNumber(params, 'attention_factor'),
        mscale: optNumber(params, 'mscale'),
        mscaleAllDim: optNumber(params, 'mscale_all_dim'),
      };
      for (const [k, v] of Object.entries(optional)) if (v !== undefined) Object.assign(scaling, { [k]: v });
      if (typeof truncate === 'boolean') scaling.truncate = truncate;
      return { ...base, scaling };
    }
    default:
      throw new Error(`lorakit: unsupported rope type ${typeValue}.`);
  }
}

// ---- frequencies ----------------------------------------------------------------------------------------

const f = Math.fround;

/**
 * The inverse frequencies [rotaryDim / 2] and attention scaling of a rope config, equal to
 * transformers' ROPE_INIT_FUNCTIONS: the same float32 operations in the same order (each step rounded
 * to float32 as torch does), so the values agree to the last bit or so.
 */
export function ropeFrequencies(
  rope: RopeConfig,
  headDim: number,
): { invFreq: Float32Array; attentionScaling: number } {
  const dim = Math.trunc(headDim * (rope.partialRotaryFactor ?? 1));
  const n = Math.ceil(dim / 2);
  const theta = f(rope.theta);
  // base ** (arange(0, dim, 2).float() / dim), then 1.0 / that: torch's reciprocal, in float32
  const posFreq = Float32Array.from({ length: n }, (_, i) => f(Math.pow(theta, f((2 * i) / dim))));
  const inv = posFreq.map((p) => f(1 / p));
  const s = rope.scaling;
  const type = s?.type ?? 'default';
  const need = (v: number | undefined, key: string): number => needNumber(v, type, key);
  switch (type) {
    case 'default':
    case 'dynamic':
      return { invFreq: inv, attentionScaling: 1 };
    case 'linear': {
      const factor = f(need(s?.factor, 'factor'));
      return { invFreq: inv.map((v) => f(v / factor)), attentionScaling: 1 };
    }
    case 'llama3': {
      const factor = f(need(s?.factor, 'factor'));
      const low = need(s?.lowFreqFactor, 'lowFreqFactor');
      const high = need(s?.highFreqFactor, 'highFreqFactor');
      const old = need(s?.originalMaxPositionEmbeddings, 'originalMaxPositionEmbeddings');
      const lowWavelen = f(old / low);
      const highWavelen = f(old / high);
      const twoPi = f(2 * Math.PI);
      const out = inv.map((v) => {
        const wavelen = f(f(1 / v) * twoPi); // 2π / inv_freq is reciprocal(inv_freq) · 2π in torch
        const scaled = wavelen > lowWavelen ? f(v / factor) : v;
        if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
        const smooth = f(f(f(f(1 / wavelen) * f(old)) - f(low)) / f(high - low));
        return f(f(f(f(f(1) - smooth) * scaled) / factor) + f(smooth * scaled));
      });
      return { invFreq: out, attentionScaling: 1 };
    }
    case 'yarn': {
      const factor = need(s?.factor, 'factor');
      const orig = need(s?.originalMaxPositionEmbeddings, 'originalMaxPositionEmbeddings');
      const mscaleOf = (scale: number, m = 1): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      let attention = s?.attentionFactor;
      if (attention === undefined)
        attention =
          s?.mscale && s?.mscaleAllDim
            ? mscaleOf(factor, s.mscale) / mscaleOf(factor, s.mscaleAllDim)
            : mscaleOf(factor);
      const betaFast = s?.betaFast || 32;
      const betaSlow = s?.betaSlow || 1;
      const correctionDim = (rotations: number): number =>
        (dim * Math.log(orig / (rotations * 2 * Math.PI))) / (2 * Math.log(rope.theta));
      let lo = correctionDim(betaFast);
      let hi = correctionDim(betaSlow);
      if (s?.truncate ?? true) {
        lo = Math.floor(lo);
        hi = Math.ceil(hi);
      }
      lo = Math.max(lo, 0);
      hi = Math.min(hi, dim - 1);
      if (lo === hi) hi += 0.001; // transformers' guard against a zero-width ramp
      const ff = f(factor);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const extrapolation = inv[i];
        const interpolation = f(1 / f(ff * posFreq[i]));
        const ramp = Math.min(1, Math.max(0, f(f(i - f(lo)) / f(hi - lo))));
        const extrapolationFactor = f(1 - ramp);
        out[i] = f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
      }
      return { invFreq: out, attentionScaling: attention };
    }
  }
}

/**
 * cos/sin tables [maxPositions, rotaryDim/2] f32 (rotaryDim = headDim unless partialRotaryFactor < 1),
 * already multiplied by the attention scaling. Angles are formed as transformers forms them
 * (float32 inv_freq × float32 position, one rounding) and their cos/sin rounded once to float32.
 */
export function ropeTables(
  rope: RopeConfig,
  headDim: number,
  maxPositions: number,
): { cos: Tensor; sin: Tensor } {
  if (!Number.isInteger(maxPositions) || maxPositions < 1)
    throw new Error(`lorakit: ropeTables: maxPositions must be a positive integer, got ${maxPositions}.`);
  if (
    rope.scaling?.type === 'dynamic' &&
    maxPositions > (rope.scaling.originalMaxPositionEmbeddings ?? Infinity)
  )
    throw new Error(
      `lorakit: dynamic rope scaling beyond max_position_embeddings (${rope.scaling.originalMaxPositionEmbeddings}) is not supported; use at most that many positions.`,
    );
  const { invFreq, attentionScaling } = ropeFrequencies(rope, headDim);
  const half = invFreq.length;
  const scale = f(attentionScaling);
  const cos = Tensor.empty([maxPositions, half]);
  const sin = Tensor.empty([maxPositions, half]);
  const c = cos.as('f32');
  const s = sin.as('f32');
  for (let p = 0; p < maxPositions; p++)
    for (let i = 0; i < half; i++) {
      const angle = f(invFreq[i] * p);
      c[p * half + i] = scale === 1 ? Math.cos(angle) : f(Math.cos(angle)) * scale;
      s[p * half + i] = scale === 1 ? Math.sin(angle) : f(Math.sin(angle)) * scale;
    }
  return { cos, sin };
}

// ---- the op ------------------------------------------------------------------------------------------

function checkPositions(positions: Tensor, maxPositions: number): void {
  if (!positions.onHost) return; // device kernels check on their side
  const p = positions.as('i32');
  for (let i = 0; i < p.length; i++)
    if (p[i] < 0 || p[i] >= maxPositions)
      throw new Error(
        `lorakit: rope: position ${p[i]} is outside the rope tables, which cover positions 0 to ${maxPositions - 1}.`,
      );
}

/**
 * Applies rotary embeddings: x [B, T, H, Dh] f32, cos/sin [P, half] f32 from ropeTables, positions
 * [B, T] i32 (restarting at 0 for each packed sequence). The first 2·half dims of each head are
 * rotated; any further dims (partial rotary) pass through unchanged.
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor, positions: Tensor): Tensor {
  sameDevice('rope', x, cos, sin, positions);
  expectFloat('rope', 'x', x);
  expectDType('rope', 'cos', cos, 'f32');
  expectDType('rope', 'sin', sin, 'f32');
  expectDType('rope', 'positions', positions, 'i32');
  if (x.shape.length !== 4)
    throw new Error(`lorakit: rope: x must be [batch, seq, heads, headDim], got ${shapeString(x.shape)}.`);
  if (
    cos.shape.length !== 2 ||
    sin.shape.length !== 2 ||
    cos.shape[0] !== sin.shape[0] ||
    cos.shape[1] !== sin.shape[1]
  )
    throw new Error(
      `lorakit: rope: cos ${shapeString(cos.shape)} and sin ${shapeString(sin.shape)} must both be [positions, half].`,
    );
  const [B, T, , Dh] = x.shape;
  if (2 * cos.shape[1] > Dh || cos.shape[1] < 1)
    throw new Error(`lorakit: rope: tables of width ${cos.shape[1]} do not fit head dimension ${Dh}.`);
  if (positions.shape.length !== 2 || positions.shape[0] !== B || positions.shape[1] !== T)
    throw new Error(
      `lorakit: rope: positions has shape ${shapeString(positions.shape)}, expected [${B}, ${T}].`,
    );
  checkPositions(positions, cos.shape[0]);
  const out = emptyLike(x);
  kernel(x.device, 'ropeForward')(out, x, cos, sin, positions);
  // The tables and positions are constants: only x gets a gradient.
  if (needsRecord([x]))
    record([x], [out], [cos, sin, positions], ([g]) => {
      const dx = emptyLike(g);
      kernel(g.device, 'ropeBackward')(dx, g, cos, sin, positions);
      return [dx];
    });
  return out;
}
