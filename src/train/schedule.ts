/** Learning-rate schedules as transformers' get_*_schedule_with_warmup (step counted from 0). */
export type SchedulerName = 'constant' | 'linear' | 'cosine';

export interface Schedule {
  name: SchedulerName;
  baseLr: number;
  warmupSteps: number;
  totalSteps: number;
}

/** The learning rate of optimizer step `step` (0-based). */
export function learningRate(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return (s.baseLr * step) / Math.max(1, s.warmupSteps);
  if (s.name === 'constant') return s.baseLr;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = (step - s.warmupSteps) / span;
  if (s.name === 'linear') return s.baseLr * Math.max(0, 1 - progress);
  return s.baseLr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
