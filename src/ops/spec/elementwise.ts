// Elementwise ops: add (with suffix broadcasting, e.g. a bias), mul, scale, axpy, row and column sums,
// cast and fill.
import { cuda, host, op, type OpGroup } from './dsl.js';

const broadcast = 'out:ptr a:ptr b:ptr t:dtype n:count nb:count';

export const elementwise = {
  ops: {
    /** out = a + b, b broadcast over a's leading dims when b.size divides a.size. */
    add: op('out:float = a:float b:float'),
    /** out = a * b, broadcast as add. */
    mul: op('out:float = a:float b:float'),
    /** y += alpha * x */
    axpy: op('y:f32|bf16 = x:f32|bf16 alpha'),
    /** out = alpha * x */
    scale: op('out:float = x:float alpha'),
    /** out[r] = sum_c x[r, c] for x viewed as [rows, cols] */
    sumRows: op('out:f32|bf16 = x:f32|bf16 rows cols'),
    /** out = x converted between f32 and bf16 (a copy when the dtypes agree) */
    cast: op('out:any = x:any'),
    /** every element of out = value */
    fill: op('out:any = value'),
    /** out[c] = Σ_r x[r, c] for x viewed as [rows, cols] (bias gradients, broadcast reductions) */
    sumColumns: op('out:float = x:float rows cols'),
  },
  cpu: {
    addF32: host('out:f32 a:f32 b:f32 n nb'),
    mulF32: host('out:f32 a:f32 b:f32 n nb'),
    axpyF32: host('y:f32 x:f32 alpha n'),
    scaleF32: host('out:f32 x:f32 alpha n'),
    sumRowsF32: host('out:f32 x:f32 rows cols'),
    /** out [n] bf16 bits = x [n] rounded to nearest even (file readers convert with it too). */
    f32ToBf16: host('out:u16 x:f32 n'),
    bf16ToF32: host('out:f32 x:u16 n'),
  },
  cuda: {
    /** out[i] = a[i] + b[i mod nb] (nb divides n), fp32 math; out, a, b of dtype t. */
    add: cuda('lkc::add_broadcast', broadcast),
    /** out[i] = a[i] · b[i mod nb]. */
    mul: cuda('lkc::mul_broadcast', broadcast),
    scale: cuda('lkc::scale', 'out:ptr x:ptr alpha:f32 t:dtype n:count'),
    axpy: cuda('lkc::axpy', 'y:ptr yType:dtype x:ptr xType:dtype alpha:f32 n:count'),
    cast: cuda('lkc::cast', 'out:ptr outType:dtype x:ptr xType:dtype n:count'),
    fill: cuda('lkc::fill', 'out:ptr t:dtype value:f32 n:count'),
    /** out[r] = Σ_c x[r, c] (fp32 accumulation); out of outType, x of xType. */
    sumRows: cuda('lkc::sum_rows', 'out:ptr outType:dtype x:ptr xType:dtype rows:count cols:count'),
  },
} as const satisfies OpGroup;
