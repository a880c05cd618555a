// DIR/report.html: one self-contained file with the dashboard's charts, final numbers and config,
// uPlot and the data inlined, so it opens offline (file://) and can be mailed or archived.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderPage } from './page.js';
import { readRun, REPORT_FILE, runNames, type RunData } from './runs.js';

/** The report page for runs already read. */
export function renderReport(runs: RunData[], now = Date.now()): string {
  const title =
    runs.length === 1 ? `${runs[0].name} — lorakit run report` : `${runs.length} runs — lorakit report`;
  return renderPage(title, { mode: 'report', data: { runs, now } });
}

/**
 * Reads the runs in `dirs` and writes their report to `out` (default: the first run's
 * DIR/report.html), under a temporary name first so a reader never sees half a file.
 * Returns the path written.
 */
export function writeReport(dirs: string | string[], out?: string): string {
  const list = typeof dirs === 'string' ? [dirs] : dirs;
  if (list.length === 0) throw new Error('lorakit: writeReport needs at least one run folder.');
  const names = runNames(list);
  const runs = list.map((d, i) => readRun(d, names[i]));
  const path = out ?? join(list[0], REPORT_FILE);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, renderReport(runs));
  renameSync(tmp, path);
  return path;
}
