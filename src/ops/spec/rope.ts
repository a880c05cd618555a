// Rotary position embeddings (HF "rotate_half" layout).
import { cuda, host, op, type OpGroup } from './dsl.js';

const tables = 'cos:f32 sin:f32 positions:i32';
const cpuSizes = 'rows heads headDim half maxPositions';
const cudaTables = 'cos:float* sin:float* pos:int32_t* rows:count H:dim D:dim half:dim';
const grid = { of: ['rows', 'H'], perBlock: 8, what: 'rope' };

export const rope = {
  ops: {
    /** out [B, T, H, Dh] <- x [B, T, H, Dh], cos/sin [P, half], positions [B, T] i32: rotation by +θ. */
    ropeForward: op(`out:float = x:float ${tables}`),
    /** dx <- dy, rotation by −θ (the transpose of the forward rotation). */
    ropeBackward: op(`dx:float = dy:float ${tables}`),
  },
  cpu: {
    ropeForwardF32: host(`out:f32 x:f32 ${tables} ${cpuSizes}`),
    ropeBackwardF32: host(`dx:f32 dy:f32 ${tables} ${cpuSizes}`),
  },
  cuda: {
    /** out, x [rows, H, D] of dtype t (f32 or bf16; in place allowed); f32 cos, sin [P, half]; i32 pos [rows]. */
    ropeForward: cuda('lkc::rope_forward', `out:ptr x:ptr t:floatType ${cudaTables}`, grid),
    /** dx, dy [rows, H, D] of dtype t: the rotation by −θ. */
    ropeBackward: cuda('lkc::rope_backward', `dx:ptr dy:ptr t:floatType ${cudaTables}`, grid),
  },
} as const satisfies OpGroup;
