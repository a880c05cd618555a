import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport } from '../dashboard/report.js';
import { expandRunDirs, METRICS_FILE } from '../dashboard/runs.js';
import { startDashboard } from '../dashboard/server.js';
import { parseFlags, UsageError, type Specs } from './args.js';

export const SYNOPSIS = 'DIR [DIR...] [--port 6006] [--report FILE]';
export const HELP = 'live web view of one or more training runs';

export const FLAGS = {
  port: { type: 'int', help: 'port on 127.0.0.1 (6006; 0 picks a free one)', min: 0, max: 65535 },
  report: { type: 'string', help: 'write a self-contained HTML report of the runs to FILE and exit' },
} as const satisfies Specs;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'dashboard', { positionals: true });
  if (f._.length === 0)
    throw new UsageError('lorakit dashboard: give at least one run folder (a train --out DIR).');
  let dirs: string[];
  try {
    dirs = expandRunDirs(f._);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const waiting = dirs.filter((d) => !existsSync(join(d, METRICS_FILE)));
  if (f.report !== undefined) {
    if (waiting.length)
      throw new UsageError(
        `lorakit dashboard: ${join(waiting[0], METRICS_FILE)} does not exist, so there is nothing to report.`,
      );
    const path = writeReport(dirs, f.report);
    process.stdout.write(`lorakit: report written to ${path}\n`);
    return 0;
  }
  for (const d of waiting)
    process.stderr.write(
      `lorakit: note: ${d} has no ${METRICS_FILE} yet; its curves appear when training starts writing there.\n`,
    );
  const dash = await startDashboard({ dirs, port: f.port ?? 6006 });
  process.stdout.write(
    `lorakit: dashboard at ${dash.url} following ${dirs.length} run${dirs.length === 1 ? '' : 's'} (Ctrl-C stops)\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await dash.close();
  return 0;
}
