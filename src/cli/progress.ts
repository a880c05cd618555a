import type { StepMetrics } from '../train/trainer.js';

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** One status line: redrawn in place on a terminal, printed every few seconds otherwise. */
export class Progress {
  private lastPrint = 0;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  private line(m: StepMetrics): string {
    const eta = (m.elapsed / m.step) * (m.totalSteps - m.step);
    return `step ${m.step}/${m.totalSteps} | loss ${m.loss.toFixed(4)} | lr ${m.lr.toExponential(2)} | grad ${m.grad_norm.toFixed(3)} | ${Math.round(m.tokens_per_s)} tok/s | mem ${formatBytes(m.memory)} | ETA ${formatDuration(eta)}`;
  }

  step(m: StepMetrics): void {
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${this.line(m)}`);
      this.drawn = true;
      return;
    }
    const now = Date.now();
    if (m.step === 1 || m.step === m.totalSteps || now - this.lastPrint > 5000) {
      this.stream.write(`${this.line(m)}\n`);
      this.lastPrint = now;
    }
  }

  note(text: string): void {
    this.done();
    this.stream.write(`${text}\n`);
  }

  done(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
