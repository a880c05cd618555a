// The CPU's greedy pick (argmaxFirst over each row): a scan of f32 rows.
import { argmaxFirst } from '../../infer/sampling.js';
import type { Kernels } from '../kernels.js';
import { f32 } from './arrays.js';

export const argmaxKernels = {
  argmaxRows: (out, x) => {
    const V = x.shape.at(-1)!;
    const data = f32(x);
    const ids = out.as('i32');
    for (let r = 0; r < ids.length; r++) ids[r] = argmaxFirst(data.subarray(r * V, (r + 1) * V));
  },
} satisfies Kernels;
