// Training progress on stderr. On a terminal: one bar redrawn in place (step/total, loss, eval loss,
// lr, tokens/s, memory, ETA), fitted to the terminal's width. Elsewhere (CI, log files): plain
// lines, the first and last step and one every `interval` ms, so logs stay short and greppable.
import type { StepMetrics } from '../train/trainer.js';

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(sec).padStart(2, '0')}s`
      : `${sec}s`;
}

/** Where progress goes: process.stderr, or anything with write (tests pass a collector). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Redraw a bar in place (default: the stream's isTTY). */
  tty?: boolean;
  /** Plain mode: at most one line per this many ms (default 5000). */
  interval?: number;
  /** TTY mode: at most one redraw per this many ms (default 100). */
  redraw?: number;
  /** Eval loss known before the first step (evaluated before training). */
  evalLoss?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** Steps the rates and ETA look back over: recent speed, not the average since the start. */
const WINDOW = 20;

export class Progress {
  private readonly tty: boolean;
  private readonly interval: number;
  private readonly redraw: number;
  private readonly now: () => number;
  private evalLoss: number | null;
  /** The step evalLoss was measured at (0: before training). */
  private evalStep = 0;
  private printedStep = 0;
  private last: StepMetrics | null = null;
  private recent: StepMetrics[] = [];
  private lastWrite = -Infinity;
  private drawn = false;

  constructor(
    private readonly stream: ProgressStream,
    options: ProgressOptions = {},
  ) {
    this.tty = options.tty ?? stream.isTTY === true;
    this.interval = options.interval ?? 5000;
    this.redraw = options.redraw ?? 100;
    this.now = options.now ?? Date.now;
    this.evalLoss = options.evalLoss ?? null;
  }

  /** Tokens per second over the recent steps: all their tokens over all their step time. */
  tokensPerSecond(): number {
    let tokens = 0;
    let seconds = 0;
    for (const m of this.recent)
      if (m.tokens_per_s > 0) {
        tokens += m.tokens;
        seconds += m.tokens / m.tokens_per_s;
      }
    return seconds > 0 ? tokens / seconds : 0;
  }

  /** Seconds left, from the recent pace (eval and checkpoint time included, as they recur). */
  eta(): number {
    const m = this.last;
    if (!m) return NaN;
    const first = this.recent[0];
    const perStep =
      this.recent.length > 1 ? (m.elapsed - first.elapsed) / (m.step - first.step) : m.elapsed / m.step;
    return Math.max(0, perStep * (m.totalSteps - m.step));
  }

  /** The fields after the step count, in display order, each with its rank (1 = dropped last). */
  private fields(m: StepMetrics): [string, number][] {
    const out: [string, number][] = [[`loss ${m.loss.toFixed(4)}`, 1]];
    // The eval loss is measured now and then, so the column names the step it is from: the value from
    // before training (eval@0) stays a useful baseline, but unmarked it read as the current model's.
    if (this.evalLoss !== null) out.push([`eval@${this.evalStep} ${this.evalLoss.toFixed(4)}`, 3]);
    out.push([`lr ${m.lr.toExponential(2)}`, 5]);
    out.push([`${Math.round(this.tokensPerSecond()).toLocaleString('en-US')} tok/s`, 4]);
    out.push([`mem ${formatBytes(m.memory)}`, 6]);
    out.push([
      m.step >= m.totalSteps ? `took ${formatDuration(m.elapsed)}` : `ETA ${formatDuration(this.eta())}`,
      2,
    ]);
    return out;
  }

  /** One plain line (non-TTY). */
  line(m: StepMetrics): string {
    const pct = Math.floor((100 * m.step) / m.totalSteps);
    const f = this.fields(m).map(([t]) => t);
    f.splice(this.evalLoss !== null ? 3 : 2, 0, `grad ${m.grad_norm.toFixed(3)}`);
    return `step ${m.step}/${m.totalSteps} (${pct}%) | ${f.join(' | ')}`;
  }

  /**
   * The bar (TTY), never wider than the terminal so the in-place redraw never wraps: a narrow
   * terminal first shrinks the bar to 10 cells, then drops the least useful fields.
   */
  bar(m: StepMetrics, columns: number): string {
    const width = Math.max(20, columns - 1);
    const count = `${String(m.step).padStart(String(m.totalSteps).length)}/${m.totalSteps}`;
    let fields = this.fields(m);
    const tail = () => fields.map(([t]) => t).join(' | ');
    while (fields.length > 1 && 10 + 1 + count.length + 3 + tail().length > width)
      fields = fields.filter((f) => f[1] !== Math.max(...fields.map(([, r]) => r)));
    const barCells = Math.min(30, width - count.length - tail().length - 4);
    if (barCells < 5) return `${count} | ${tail()}`.slice(0, width);
    const filled = Math.round((barCells * m.step) / m.totalSteps);
    return `${'█'.repeat(filled)}${'░'.repeat(barCells - filled)} ${count} | ${tail()}`;
  }

  step(m: StepMetrics): void {
    this.last = m;
    this.recent.push(m);
    if (this.recent.length > WINDOW) this.recent.shift();
    const now = this.now();
    const edge = m.step === 1 || m.step >= m.totalSteps;
    if (this.tty) {
      if (!edge && now - this.lastWrite < this.redraw) return;
      this.stream.write(`\r\x1b[2K${this.bar(m, this.stream.columns || 80)}`);
      this.drawn = true;
    } else {
      if (!edge && now - this.lastWrite < this.interval) return;
      this.stream.write(`${this.line(m)}\n`);
    }
    this.printedStep = m.step;
    this.lastWrite = now;
  }

  /** An evaluation finished: shown on the bar from now on, and logged as its own line. */
  eval(step: number, loss: number): void {
    this.evalLoss = loss;
    this.evalStep = step;
    const total = this.last?.totalSteps;
    this.note(`step ${step}${total ? `/${total}` : ''} | eval loss ${loss.toFixed(4)}`);
  }

  /** A line of text above the bar (the bar is redrawn after it on a terminal). */
  note(text: string): void {
    if (this.tty && this.drawn) {
      this.stream.write(`\r\x1b[2K${text}\n`);
      if (this.last) this.stream.write(this.bar(this.last, this.stream.columns || 80));
      return;
    }
    this.stream.write(`${text}\n`);
  }

  /** Ends the bar's line, showing the last step if a redraw was skipped (a run stopped early). */
  done(): void {
    const m = this.last;
    if (this.tty) {
      if (m && m.step !== this.printedStep)
        this.stream.write(`\r\x1b[2K${this.bar(m, this.stream.columns || 80)}`);
      if (this.drawn || (m && m.step !== this.printedStep)) this.stream.write('\n');
      this.drawn = false;
    } else if (m && m.step !== this.printedStep) this.stream.write(`${this.line(m)}\n`);
    if (m) this.printedStep = m.step;
  }
}
