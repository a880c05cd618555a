// Elementwise ops: add (with suffix broadcasting, e.g. a bias), mul, scale, axpy, row and column sums,
// cast and fill.
import { cpuCall, cu, cudaCall, host, input, num, op, out, type OpGroup } from './dsl.js';

export const elementwise = {
  ops: {
    /** out = a + b, b broadcast over a's leading dims when b.size divides a.size. */
    add: op(out('out', 'float'), input('a', 'float'), input('b', 'float')),
    /** out = a * b, broadcast as add. */
    mul: op(out('out', 'float'), input('a', 'float'), input('b', 'float')),
    /** y += alpha * x */
    axpy: op(out('y', 'f32|bf16'), input('x', 'f32|bf16'), num('alpha')),
    /** out = alpha * x */
    scale: op(out('out', 'float'), input('x', 'float'), num('alpha')),
    /** out[r] = sum_c x[r, c] for x viewed as [rows, cols] */
    sumRows: op(out('out', 'f32|bf16'), input('x', 'f32|bf16'), num('rows'), num('cols')),
    /** out = x converted between f32 and bf16 (a copy when the dtypes agree) */
    cast: op(out('out', 'any'), input('x', 'any')),
    /** every element of out = value */
    fill: op(out('out', 'any'), num('value')),
    /** out[c] = Σ_r x[r, c] for x viewed as [rows, cols] (bias gradients, broadcast reductions) */
    sumColumns: op(out('out', 'float'), input('x', 'float'), num('rows'), num('cols')),
  },
  cpu: {
    addF32: cpuCall(host.f32('out'), host.f32('a'), host.f32('b'), host.num('n'), host.num('nb')),
    mulF32: cpuCall(host.f32('out'), host.f32('a'), host.f32('b'), host.num('n'), host.num('nb')),
    axpyF32: cpuCall(host.f32('y'), host.f32('x'), host.num('alpha'), host.num('n')),
    scaleF32: cpuCall(host.f32('out'), host.f32('x'), host.num('alpha'), host.num('n')),
    sumRowsF32: cpuCall(host.f32('out'), host.f32('x'), host.num('rows'), host.num('cols')),
    /** out [n] bf16 bits = x [n] rounded to nearest even (file readers convert with it too). */
    f32ToBf16: cpuCall(host.u16('out'), host.f32('x'), host.num('n')),
    bf16ToF32: cpuCall(host.f32('out'), host.u16('x'), host.num('n')),
  },
  cuda: {
    /** out[i] = a[i] + b[i mod nb] (nb divides n), fp32 math; out, a, b of dtype t. */
    add: cudaCall('lkc::add_broadcast', [
      cu.ptr('out'),
      cu.ptr('a'),
      cu.ptr('b'),
      cu.dtype('t'),
      cu.count('n'),
      cu.count('nb'),
    ]),
    /** out[i] = a[i] · b[i mod nb]. */
    mul: cudaCall('lkc::mul_broadcast', [
      cu.ptr('out'),
      cu.ptr('a'),
      cu.ptr('b'),
      cu.dtype('t'),
      cu.count('n'),
      cu.count('nb'),
    ]),
    scale: cudaCall('lkc::scale', [
      cu.ptr('out'),
      cu.ptr('x'),
      cu.f32('alpha'),
      cu.dtype('t'),
      cu.count('n'),
    ]),
    axpy: cudaCall('lkc::axpy', [
      cu.ptr('y'),
      cu.dtype('yType'),
      cu.ptr('x'),
      cu.dtype('xType'),
      cu.f32('alpha'),
      cu.count('n'),
    ]),
    cast: cudaCall('lkc::cast', [
      cu.ptr('out'),
      cu.dtype('outType'),
      cu.ptr('x'),
      cu.dtype('xType'),
      cu.count('n'),
    ]),
    fill: cudaCall('lkc::fill', [cu.ptr('out'), cu.dtype('t'), cu.f32('value'), cu.count('n')]),
    /** out[r] = Σ_c x[r, c] (fp32 accumulation); out of outType, x of xType. */
    sumRows: cudaCall('lkc::sum_rows', [
      cu.ptr('out'),
      cu.dtype('outType'),
      cu.ptr('x'),
      cu.dtype('xType'),
      cu.count('rows'),
      cu.count('cols'),
    ]),
  },
} as const satisfies OpGroup;
