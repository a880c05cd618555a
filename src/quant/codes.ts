// Code tables of bitsandbytes' quantization types, as fp32 values, and the two small fp32 reductions
// whose exact rounding double quantization depends on.

/** NF4 (QLoRA's NormalFloat): 16 quantiles of N(0, 1) scaled to [-1, 1], as bitsandbytes lists them. */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** FP4 (1 sign, 2 exponent, 1 mantissa bit) in bit-pattern order, divided by 12 in fp32 as bitsandbytes does. */
export const FP4_CODE: Float32Array = Float32Array.from([
  0.0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5, 0.1666666716337204, 0.25, 0.0,
  -0.0052083334885537624, -0.6666666865348816, -1.0, -0.3333333432674408, -0.5, -0.1666666716337204, -0.25,
]);

/** FP4 code indices in ascending value order (torch.argsort on the reference; the two zeros in index order). */
export const FP4_ORDER: readonly number[] = [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3];

export type Quant4Type = 'nf4' | 'fp4';

export function code4(type: Quant4Type): Float32Array {
  return type === 'nf4' ? NF4_CODE : FP4_CODE;
}

/** The sorted order of a 4-bit code and the fp32 midpoints between neighbours (bucket boundaries). */
export function code4Bounds(type: Quant4Type): { order: number[]; mid: Float32Array } {
  const code = code4(type);
  const order = type === 'nf4' ? Array.from({ length: 16 }, (_, i) => i) : [...FP4_ORDER];
  const mid = new Float32Array(15);
  for (let i = 0; i < 15; i++) mid[i] = Math.fround(Math.fround(code[order[i]] + code[order[i + 1]]) / 2);
  return { order, mid };
}

/**
 * bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(): dynamic exponent and fraction, 256
 * sorted values in [-1, 1]), the code of double quantization's absmax blocks.
 */
export const DYNAMIC_MAP: Float32Array = Float32Array.from([
  -0.99296874, -0.9789063, -0.96484375, -0.9507812, -0.93671876, -0.92265624, -0.9085938, -0.89453125,
  -0.8804687, -0.86640626, -0.85234374, -0.8382813, -0.82421875, -0.8101562, -0.79609376, -0.78203124,
  -0.7679688, -0.75390625, -0.7398437, -0.72578126, -0.7117188, -0.6976563, -0.68359375, -0.6695312,
  -0.65546876, -0.6414063, -0.6273438, -0.61328125, -0.5992187, -0.58515626, -0.5710938, -0.5570313,
  -0.54296875, -0.5289062, -0.5148437, -0.50078124, -0.4867187, -0.47265625, -0.45859373, -0.44453126,
  -0.43046874, -0.41640624, -0.40234375, -0.38828123, -0.37421876, -0.36015624, -0.34609374, -0.33203125,
  -0.31796873, -0.30390626, -0.28984374, -0.27578127, -0.26171875, -0.24765624, -0.23359375, -0.21953125,
  -0.20546874, -0.19140625, -0.17734376, -0.16328125, -0.14921875, -0.13515624, -0.12109375, -0.107031256,
  -0.09859375, -0.09578126, -0.092968754, -0.09015625, -0.08734375, -0.08453125, -0.08171876, -0.07890625,
  -0.07609375, -0.07328125, -0.070468746, -0.067656256, -0.06484375, -0.06203125, -0.059218753, -0.05640625,
  -0.05359375, -0.05078125, -0.04796875, -0.04515625, -0.042343747, -0.03953125, -0.036718752, -0.03390625,
  -0.03109375, -0.028281251, -0.02546875, -0.02265625, -0.019843752, -0.01703125, -0.01421875, -0.01140625,
  -0.00971875, -0.009156249, -0.00859375, -0.00803125, -0.00746875, -0.00690625, -0.00634375, -0.00578125,
  -0.0052187503, -0.0046562497, -0.00409375, -0.0035312497, -0.00296875, -0.00240625, -0.00184375,
  -0.0012812499, -0.0009437501, -0.00083125, -0.00071875006, -0.0006062501, -0.00049375003, -0.00038125002,
  -0.00026875004, -0.00015625001, -8.875e-5, -6.625e-5, -4.375e-5, -2.1249998e-5, -7.75e-6, -3.2500002e-6,
  -5.5000004e-7, 0, 5.5000004e-7, 3.2500002e-6, 7.75e-6, 2.1249998e-5, 4.375e-5, 6.625e-5, 8.875e-5,
  0.00015625001, 0.00026875004, 0.00038125002, 0.00049375003, 0.0006062501, 0.00071875006, 0.00083125,
  0.0009437501, 0.0012812499, 0.00184375, 0.00240625, 0.00296875, 0.0035312497, 0.00409375, 0.0046562497,
  0.0052187503, 0.00578125, 0.00634375, 0.00690625, 0.00746875, 0.00803125, 0.00859375, 0.009156249,
  0.00971875, 0.01140625, 0.01421875, 0.01703125, 0.019843752, 0.02265625, 0.02546875, 0.028281251,
  0.03109375, 0.03390625, 0.036718752, 0.03953125, 0.042343747, 0.04515625, 0.04796875, 0.05078125,
  0.05359375, 0.05640625, 0.059218753, 0.06203125, 0.06484375, 0.067656256, 0.070468746, 0.07328125,
  0.07609375, 0.07890625, 0.08171876, 0.08453125, 0.08734375, 0.09015625, 0.092968754, 0.09578126, 0.09859375,
  0.107031256, 0.12109375, 0.13515624, 0.14921875, 0.16328125, 0.17734376, 0.19140625, 0.20546874, 0.21953125,
  0.23359375, 0.24765624, 0.26171875, 0.27578127, 0.28984374, 0.30390626, 0.31796873, 0.33203125, 0.34609374,
  0.36015624, 0.37421876, 0.38828123, 0.40234375, 0.41640624, 0.43046874, 0.44453126, 0.45859373, 0.47265625,
  0.4867187, 0.50078124, 0.5148437, 0.5289062, 0.54296875, 0.5570313, 0.5710938, 0.58515626, 0.5992187,
  0.61328125, 0.6273438, 0.6414063, 0.65546876, 0.6695312, 0.68359375, 0.6976563, 0.7117188, 0.72578126,
  0.7398437, 0.75390625, 0.7679688, 0.78203124, 0.79609376, 0.8101562, 0.82421875, 0.8382813, 0.85234374,
  0.86640626, 0.8804687, 0.89453125, 0.9085938, 0.92265624, 0.93671876, 0.9507812, 0.96484375, 0.9789063,
  0.99296874, 1,
]);

/**
 * torch.Tensor.mean() of a contiguous fp32 vector on the CPU, bit for bit: torch sums with its cascade
 * algorithm (SumKernel.cpp: `lanes` vector accumulators, four interleaved rows, levels of 16+ partial
 * sums), then divides by n in fp32. `lanes` is Vectorized<float>'s width in torch's reduction kernels:
 * 8 on x86 builds (AVX2 and AVX-512 machines alike, measured). Tensors of 32768 values or more are
 * summed by several threads in torch, whose split depends on its thread count; this is the
 * single-thread order.
 */
export function torchMeanF32(x: Float32Array, lanes = 8): number {
  const n = x.length;
  if (n === 0) return NaN;
  return Math.fround(torchSumF32(x, lanes) / n);
}

export function torchSumF32(x: Float32Array, lanes = 8): number {
  const f = Math.fround;
  const n = x.length;
  // row_sum over `size` items, each `width` wide (width = lanes for the vector pass, 1 for scalars);
  // item i starts at x[i * width]. Returns `width` partial sums.
  const rowSum = (size: number, width: number): Float32Array => {
    const ilp = 4;
    const sizeIlp = Math.floor(size / ilp);
    // multi_row_sum over sizeIlp rows of ilp items each.
    const levels = 4;
    const ceilLog2 = sizeIlp <= 2 ? 1 : 32 - Math.clz32(sizeIlp - 1);
    const levelPower = Math.max(4, Math.floor(ceilLog2 / levels));
    const step = 2 ** levelPower;
    const mask = step - 1;
    const acc = Array.from({ length: levels }, () =>
      Array.from({ length: ilp }, () => new Float32Array(width)),
    );
    const addItem = (dst: Float32Array, item: number): void => {
      const base = item * width;
      for (let l = 0; l < width; l++) dst[l] = f(dst[l] + x[base + l]);
    };
    let i = 0;
    for (; i + step <= sizeIlp;) {
      for (let j = 0; j < step; j++, i++) for (let k = 0; k < ilp; k++) addItem(acc[0][k], i * ilp + k);
      for (let j = 1; j < levels; j++) {
        for (let k = 0; k < ilp; k++) {
          for (let l = 0; l < width; l++) acc[j][k][l] = f(acc[j][k][l] + acc[j - 1][k][l]);
          acc[j - 1][k].fill(0);
        }
        if ((i & (mask * 2 ** (j * levelPower))) !== 0) break;
      }
    }
    for (; i < sizeIlp; i++) for (let k = 0; k < ilp; k++) addItem(acc[0][k], i * ilp + k);
    for (let j = 1; j < levels; j++)
      for (let k = 0; k < ilp; k++)
        for (let l = 0; l < width; l++) acc[0][k][l] = f(acc[0][k][l] + acc[j][k][l]);
    const p = acc[0];
    for (let it = sizeIlp * ilp; it < size; it++) addItem(p[0], it);
    for (let k = 1; k < ilp; k++) for (let l = 0; l < width; l++) p[0][l] = f(p[0][l] + p[k][l]);
    return p[0];
  };
  if (n >= lanes) {
    const vecSize = Math.floor(n / lanes);
    const partials = rowSum(vecSize, lanes);
    let total = 0;
    for (let k = vecSize * lanes; k < n; k++) total = f(total + x[k]);
    for (let l = 0; l < lanes; l++) total = f(total + partials[l]);
    return total;
  }
  return rowSum(n, 1)[0];
}
