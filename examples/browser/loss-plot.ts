// The live loss plot: one uPlot line of the training loss by step, redrawn as each step ends.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export class LossPlot {
  private readonly steps: number[] = [];
  private readonly losses: number[] = [];
  private readonly plot: uPlot;

  constructor(container: HTMLElement) {
    this.plot = new uPlot(
      {
        width: Math.max(320, container.clientWidth),
        height: 260,
        scales: { x: { time: false } },
        axes: [{ label: 'step' }, { label: 'training loss' }],
        series: [{ label: 'step' }, { label: 'loss', stroke: '#2563eb', width: 2 }],
      },
      [[], []],
      container,
    );
  }

  /** Starts a new run's line. */
  clear(): void {
    this.steps.length = 0;
    this.losses.length = 0;
    this.plot.setData([[], []]);
  }

  add(step: number, loss: number): void {
    this.steps.push(step);
    this.losses.push(loss);
    this.plot.setData([this.steps, this.losses]);
  }
}
