// Cross-entropy over the vocabulary with ignore index −100, and the output head fused with it.
import { cpuCall, cu, cudaCall, cudaSize, host, input, op, optOut, out, type OpGroup } from './dsl.js';

/** The target of a row that has no loss (torch's ignore_index). */
export const IGNORE_INDEX = -100;

export const crossEntropy = {
  ops: {
    /**
     * loss [] = Σ over kept rows of (lse − logits[target]); lse [N] (0 for ignored rows); rowLoss [N]
     * (optional, 0 for ignored rows) <- logits [N, V], targets [N] i32 (−100 = ignore)
     */
    crossEntropyForward: op(
      out('loss', 'f32'),
      out('lse', 'f32'),
      optOut('rowLoss', 'f32'),
      input('logits', 'float'),
      input('targets', 'i32'),
    ),
    /** dlogits [N, V] = gradLoss · (softmax − onehot), 0 on ignored rows <- logits, targets, lse, gradLoss [] */
    crossEntropyBackward: op(
      out('dlogits', 'float'),
      input('logits', 'float'),
      input('targets', 'i32'),
      input('lse', 'f32'),
      input('gradLoss', 'f32'),
    ),
    /**
     * The head and the loss fused, logits never whole (CPU: chunks of the rows that have a target;
     * CUDA: vocabulary chunks through cuBLASLt). rowLoss [N] f32 (0 for ignored rows) <- h [N, D],
     * w [V, D], targets [N]; with dhUnit [N, D] f32 (training), also the head's input gradient for a
     * unit loss gradient, softmax(h wᵀ)·w − w[target] (0 on ignored rows).
     */
    linearCrossEntropyForward: op(
      out('rowLoss', 'f32'),
      optOut('dhUnit', 'f32'),
      input('h', 'float'),
      input('w', 'f32|bf16'),
      input('targets', 'i32'),
    ),
    /** out = scalar · x, x f32, scalar a one-element f32 tensor read where it lives (no host wait). */
    scaleByScalar: op(out('out', 'float'), input('x', 'f32'), input('scalar', 'f32')),
  },
  cpu: {
    crossEntropyForwardF32: cpuCall(
      host.f32('loss'),
      host.f32('lse'),
      host.optF32('rowLoss'),
      host.f32('logits'),
      host.i32('targets'),
      host.num('rows'),
      host.num('vocab'),
    ),
    crossEntropyBackwardF32: cpuCall(
      host.f32('dlogits'),
      host.f32('logits'),
      host.i32('targets'),
      host.f32('lse'),
      host.num('gradLoss'),
      host.num('rows'),
      host.num('vocab'),
    ),
  },
  cuda: {
    /** rowLoss, lse [N] f32 <- logits [N, V] (f32 or bf16), targets [N] i32 (−100: loss 0, lse 0). */
    crossEntropyForward: cudaCall('glue::cross_entropy_forward', [
      cu.ptr('rowLoss', 'float'),
      cu.ptr('lse', 'float'),
      cu.ptr('logits'),
      cu.dtype('t'),
      cu.ptr('targets', 'int32_t'),
      cu.count('N'),
      cu.count('V'),
    ]),
    /** dlogits [N, V] (logits' dtype, may alias logits) = gradLoss[0]·(softmax − onehot), 0 on ignored rows; gradLoss f32 on the device. */
    crossEntropyBackward: cudaCall('lkc::cross_entropy_backward', [
      cu.ptr('dlogits'),
      cu.ptr('logits'),
      cu.dtype('t'),
      cu.ptr('targets', 'int32_t'),
      cu.ptr('lse', 'float'),
      cu.ptr('gradLoss', 'float'),
      cu.count('N'),
      cu.count('V'),
    ]),
    linearCrossEntropyWorkspace: cudaSize('lkc::linear_cross_entropy_workspace', [
      cu.count('N'),
      cu.dim('chunk'),
    ]),
    /**
     * rowLoss, lse [N] f32 (lse 0: not wanted) <- h [N, C], W [V, C] both of dtype t (bf16, or f32 for
     * exact f32 GEMMs), targets [N] i32; logits only [N, chunk] at a time.
     */
    linearCrossEntropyForward: cudaCall('lkc::linear_cross_entropy_forward', [
      cu.ptr('rowLoss', 'float'),
      cu.optPtr('lse', 'float'),
      cu.ptr('h'),
      cu.ptr('W'),
      cu.floatType('t'),
      cu.ptr('targets', 'int32_t'),
      cu.count('N'),
      cu.dim('C'),
      cu.count('V'),
      cu.dim('chunk'),
      cu.ptr('workspace'),
    ]),
    /** The forward, and dhUnit [N, C] f32 = softmax · W − W[target] (0 on ignored rows). */
    linearCrossEntropyForwardGrad: cudaCall('lkc::linear_cross_entropy_forward_grad', [
      cu.ptr('rowLoss', 'float'),
      cu.optPtr('lse', 'float'),
      cu.ptr('dhUnit', 'float'),
      cu.ptr('h'),
      cu.ptr('W'),
      cu.floatType('t'),
      cu.ptr('targets', 'int32_t'),
      cu.count('N'),
      cu.dim('C'),
      cu.count('V'),
      cu.dim('chunk'),
      cu.ptr('workspace'),
    ]),
    /** out [n] of dtype t = scalar[0] · x [n] f32; scalar is a device pointer to one f32. */
    scaleByScalar: cudaCall('lkc::scale_by_scalar', [
      cu.ptr('out'),
      cu.floatType('t'),
      cu.ptr('x', 'float'),
      cu.ptr('scalar', 'float'),
      cu.count('n'),
    ]),
  },
} as const satisfies OpGroup;
