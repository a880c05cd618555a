// Output paths (--out) checked before any model is loaded: a file where a folder goes, a folder where
// a file goes, a parent that is a file or cannot be written, a folder that already holds something.
// Loading a model takes a while; failing after it on a raw EEXIST or ENOTDIR wastes that and says
// nothing useful.
import { accessSync, constants, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { METRICS_FILE, REPORT_FILE, RUN_FILE } from '../dashboard/runs.js';
import { UsageError } from './args.js';

/** The parent folders of `path` must be folders (or not exist yet), the nearest existing one writable. */
function checkParents(command: string, flag: string, path: string): void {
  let dir = dirname(resolve(path));
  while (!existsSync(dir)) dir = dirname(dir);
  if (!statSync(dir).isDirectory())
    throw new UsageError(
      `lorakit ${command}: ${flag} ${path} cannot be created: ${dir} is a file, not a folder.`,
    );
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError(`lorakit ${command}: ${flag} ${path} cannot be created: ${dir} is not writable.`);
  }
}

/** `path` names a folder to create or fill: not a file. Returns whether it exists and has entries. */
export function checkOutFolder(command: string, flag: string, path: string): boolean {
  if (existsSync(path)) {
    if (!statSync(path).isDirectory())
      throw new UsageError(`lorakit ${command}: ${flag} ${path} is a file; give a folder to write into.`);
    try {
      accessSync(path, constants.W_OK);
    } catch {
      throw new UsageError(`lorakit ${command}: ${flag} ${path} is not writable.`);
    }
    return readdirSync(path).length > 0;
  }
  checkParents(command, flag, path);
  return false;
}

/** `path` names a folder that must be new or empty (merge, export to a Hugging Face folder). */
export function checkNewFolder(command: string, flag: string, path: string): void {
  if (checkOutFolder(command, flag, path))
    throw new UsageError(
      `lorakit ${command}: ${flag} ${path} already exists and is not empty; choose a new folder.`,
    );
}

/** `path` names a file to write (replaced if it exists): not a folder, in a folder that can be written. */
export function checkOutFile(command: string, flag: string, path: string, what: string): void {
  if (existsSync(path) && statSync(path).isDirectory())
    throw new UsageError(
      `lorakit ${command}: ${flag} ${path} is a folder; give the path of the ${what} to write.`,
    );
  checkParents(command, flag, path);
}

/**
 * What a training run writes into its --out folder, including what an interrupted atomic write leaves
 * (adapter.tmp, adapter.old, run.json.tmp, report.html.tmp): `--overwrite` removes these and nothing else.
 */
export const RUN_ENTRIES = [
  'adapter',
  'adapter.tmp',
  'adapter.old',
  'checkpoints',
  METRICS_FILE,
  RUN_FILE,
  `${RUN_FILE}.tmp`,
  REPORT_FILE,
  `${REPORT_FILE}.tmp`,
] as const;

/** The entries of a previous run in `dir`. */
export function previousRun(dir: string): string[] {
  return RUN_ENTRIES.filter((e) => existsSync(join(dir, e)));
}

/** Removes a previous run's entries from `dir` (--overwrite); anything else in it stays. */
export function clearPreviousRun(dir: string): void {
  for (const e of RUN_ENTRIES) rmSync(join(dir, e), { recursive: true, force: true });
}

/** The highest checkpoints/step-N folder of a run folder, or null. */
export function latestCheckpoint(runDir: string): string | null {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return null;
  let best = -1;
  for (const name of readdirSync(dir)) {
    const m = /^step-(\d+)$/.exec(name);
    if (m && Number(m[1]) > best && existsSync(join(dir, name, 'trainer_state.json'))) best = Number(m[1]);
  }
  return best >= 0 ? join(dir, `step-${best}`) : null;
}
