// metrics.jsonl: one JSON line per step (and per evaluation), appended as the run goes.
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

/** Appends one line to metrics.jsonl. */
export function appendMetrics(path: string, line: object): void {
  appendFileSync(path, `${JSON.stringify(line)}\n`);
}

/**
 * A resumed run repeats the steps after its checkpoint: drop their lines (and a line cut short by a
 * kill) so metrics.jsonl has each step once. Rewritten under a temporary name, then renamed.
 */
export function keepMetricsUpTo(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      try {
        const m = JSON.parse(line) as { step?: unknown };
        return typeof m.step === 'number' && m.step <= step;
      } catch {
        return false;
      }
    });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, kept.map((l) => `${l}\n`).join(''));
  renameSync(tmp, path);
}
