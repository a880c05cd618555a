// Cross-entropy over the vocabulary with ignore index −100, and the output head fused with it.
import { cuda, cudaSize, host, op, type OpGroup } from './dsl.js';

/** The target of a row that has no loss (torch's ignore_index). */
export const IGNORE_INDEX = -100;

const lce = 'h:ptr W:ptr t:floatType targets:int32_t* N:count C:dim V:count chunk:dim workspace:ptr';

export const crossEntropy = {
  ops: {
    /**
     * loss [] = Σ over kept rows of (lse − logits[target]); lse [N] (0 for ignored rows); rowLoss [N]
     * (optional, 0 for ignored rows) <- logits [N, V], targets [N] i32 (−100 = ignore)
     */
    crossEntropyForward: op('loss:f32 lse:f32 rowLoss?:f32 = logits:float targets:i32'),
    /** dlogits [N, V] = gradLoss · (softmax − onehot), 0 on ignored rows <- logits, targets, lse, gradLoss [] */
    crossEntropyBackward: op('dlogits:float = logits:float targets:i32 lse:f32 gradLoss:f32'),
    /**
     * The head and the loss fused, logits never whole (CPU: chunks of the rows that have a target;
     * CUDA: vocabulary chunks through cuBLASLt). rowLoss [N] f32 (0 for ignored rows) <- h [N, D],
     * w [V, D], targets [N]; with dhUnit [N, D] f32 (training), also the head's input gradient for a
     * unit loss gradient, softmax(h wᵀ)·w − w[target] (0 on ignored rows).
     */
    linearCrossEntropyForward: op('rowLoss:f32 dhUnit?:f32 = h:float w:f32|bf16 targets:i32'),
    /** out = scalar · x, x f32, scalar a one-element f32 tensor read where it lives (no host wait). */
    scaleByScalar: op('out:float = x:f32 scalar:f32'),
  },
  cpu: {
    crossEntropyForwardF32: host('loss:f32 lse:f32 rowLoss?:f32 logits:f32 targets:i32 rows vocab'),
    crossEntropyBackwardF32: host('dlogits:f32 logits:f32 targets:i32 lse:f32 gradLoss rows vocab'),
  },
  cuda: {
    /** rowLoss, lse [N] f32 <- logits [N, V] (f32 or bf16), targets [N] i32 (−100: loss 0, lse 0). */
    crossEntropyForward: cuda(
      'glue::cross_entropy_forward',
      'rowLoss:float* lse:float* logits:ptr t:dtype targets:int32_t* N:count V:count',
    ),
    /** dlogits [N, V] (logits' dtype, may alias logits) = gradLoss[0]·(softmax − onehot), 0 on ignored rows; gradLoss f32 on the device. */
    crossEntropyBackward: cuda(
      'lkc::cross_entropy_backward',
      'dlogits:ptr logits:ptr t:dtype targets:int32_t* lse:float* gradLoss:float* N:count V:count',
    ),
    linearCrossEntropyWorkspace: cudaSize('lkc::linear_cross_entropy_workspace', 'N:count chunk:dim'),
    /**
     * rowLoss, lse [N] f32 (lse 0: not wanted) <- h [N, C], W [V, C] both of dtype t (bf16, or f32 for
     * exact f32 GEMMs), targets [N] i32; logits only [N, chunk] at a time.
     */
    linearCrossEntropyForward: cuda('lkc::linear_cross_entropy_forward', `rowLoss:float* lse?:float* ${lce}`),
    /** The forward, and dhUnit [N, C] f32 = softmax · W − W[target] (0 on ignored rows). */
    linearCrossEntropyForwardGrad: cuda(
      'lkc::linear_cross_entropy_forward_grad',
      `rowLoss:float* lse?:float* dhUnit:float* ${lce}`,
    ),
    /** out [n] of dtype t = scalar[0] · x [n] f32; scalar is a device pointer to one f32. */
    scaleByScalar: cuda('lkc::scale_by_scalar', 'out:ptr t:floatType x:float* scalar:float* n:count'),
  },
} as const satisfies OpGroup;
