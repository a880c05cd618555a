// Where a GPU step's time goes: GPU time per op, measured by CUDA events around each kernel call.
// The events ride the stream, so the work runs as it would unprofiled; the one difference is a host
// wait at the end, to read the times.
import { traceKernels, type KernelName } from '../kernels.js';
import { useCuda } from './device.js';

export interface OpTime {
  op: KernelName;
  calls: number;
  /** GPU milliseconds between each call's first and last kernel, summed. */
  ms: number;
}

export interface Profile<T> {
  result: T;
  /** Slowest first. */
  ops: OpTime[];
  /** GPU milliseconds from the first kernel call's start to the last one's end. */
  spanMs: number;
}

/** Runs fn with every CUDA kernel call timed; the ops' sum against spanMs shows the GPU's idle time. */
export function profileCuda<T>(fn: () => T): Profile<T> {
  const cu = useCuda();
  const calls: { op: KernelName; from: number; to: number }[] = [];
  cu.timerReset();
  traceKernels('cuda', (op) => {
    const from = cu.timerMark();
    return () => calls.push({ op, from, to: cu.timerMark() });
  });
  let result: T;
  try {
    result = fn();
  } finally {
    traceKernels('cuda', null);
  }
  const byOp = new Map<KernelName, OpTime>();
  for (const c of calls) {
    const t = byOp.get(c.op) ?? { op: c.op, calls: 0, ms: 0 };
    t.calls++;
    t.ms += cu.timerElapsed(c.from, c.to);
    byOp.set(c.op, t);
  }
  const spanMs = calls.length ? cu.timerElapsed(calls[0].from, calls[calls.length - 1].to) : 0;
  cu.timerReset();
  return { result, ops: [...byOp.values()].sort((a, b) => b.ms - a.ms), spanMs };
}
