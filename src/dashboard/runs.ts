// A training run as the dashboard and the report see it: the metrics the trainer appends to
// DIR/metrics.jsonl (one step line per optimizer step, eval lines carry eval_loss), and the run's
// config from DIR/run.json (written by `lorakit train` at start) or, for runs without one, the
// options saved in the newest checkpoint's trainer_state.json.
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';
import type { StepMetrics } from '../train/trainer.js';

export const METRICS_FILE = 'metrics.jsonl';
export const RUN_FILE = 'run.json';
export const REPORT_FILE = 'report.html';

export interface EvalRecord {
  step: number;
  eval_loss: number;
  eval_tokens?: number;
}

export type MetricsRecord = StepMetrics | EvalRecord;

export interface RunData {
  /** Short unique label (the folder name, or more of its path where two runs share a name). */
  name: string;
  dir: string;
  steps: StepMetrics[];
  evals: EvalRecord[];
  config: Record<string, unknown> | null;
}

export function isEvalRecord(r: MetricsRecord): r is EvalRecord {
  return 'eval_loss' in r;
}

function isRecord(v: unknown): v is MetricsRecord {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  if (typeof o.step !== 'number') return false;
  return typeof o.eval_loss === 'number' || typeof o.loss === 'number';
}

/**
 * Splits appended text into records. A last line without its newline is still being written: it is
 * returned as `rest` to be prefixed to the next read. Lines that are not metrics are skipped.
 */
export function parseMetricsText(text: string): { records: MetricsRecord[]; rest: string } {
  const end = text.lastIndexOf('\n');
  const rest = text.slice(end + 1);
  const records: MetricsRecord[] = [];
  for (const line of text.slice(0, end + 1).split('\n')) {
    if (!line.trim()) continue;
    try {
      const v: unknown = JSON.parse(line);
      if (isRecord(v)) records.push(v);
    } catch {
      // A damaged line (a crash mid-write): the rest of the file is still good.
    }
  }
  return { records, rest };
}

/**
 * Adds records in file order. A step at or before one already seen means the run was restarted or
 * resumed from a checkpoint into the same folder: the later lines replace the earlier ones from that
 * step on, so the curves show the run as it finally went. (The page's script applies the same rule.)
 */
export function applyRecords(run: Pick<RunData, 'steps' | 'evals'>, records: MetricsRecord[]): void {
  for (const r of records) {
    if (isEvalRecord(r)) {
      while (run.evals.length && run.evals[run.evals.length - 1].step >= r.step) run.evals.pop();
      run.evals.push(r);
    } else {
      if (run.steps.length && run.steps[run.steps.length - 1].step >= r.step) {
        run.steps = run.steps.filter((s) => s.step < r.step);
        run.evals = run.evals.filter((e) => e.step < r.step);
      }
      run.steps.push(r);
    }
  }
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** DIR/run.json, else the options of the newest checkpoint, else null. */
export function readRunConfig(dir: string): Record<string, unknown> | null {
  const run = readJson(join(dir, RUN_FILE));
  if (isObject(run)) return run;
  const ckpts = join(dir, 'checkpoints');
  if (!existsSync(ckpts)) return null;
  const steps = readdirSync(ckpts)
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  for (const s of steps) {
    const state = readJson(join(ckpts, `step-${s}`, 'trainer_state.json'));
    if (isObject(state) && isObject(state.options)) return { options: state.options };
  }
  return null;
}

export function readRun(dir: string, name = basename(resolve(dir))): RunData {
  const run: RunData = { name, dir, steps: [], evals: [], config: readRunConfig(dir) };
  const path = join(dir, METRICS_FILE);
  if (existsSync(path)) applyRecords(run, parseMetricsText(readFileSync(path, 'utf8')).records);
  return run;
}

/** Writes DIR/run.json (temporary name, then rename: a reader never sees half a file). */
export function writeRunInfo(dir: string, info: Record<string, unknown>): void {
  const path = join(dir, RUN_FILE);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`);
  renameSync(tmp, path);
}

function isRunDir(dir: string): boolean {
  return existsSync(join(dir, METRICS_FILE)) || existsSync(join(dir, RUN_FILE));
}

/**
 * The run folders named on the command line: a folder with metrics.jsonl or run.json is a run; a
 * folder holding such folders (a runs/ parent) stands for all of them; a folder that does not exist
 * yet (or is empty) is a run that has not started.
 */
export function expandRunDirs(dirs: string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    if (existsSync(d) && !statSync(d).isDirectory())
      throw new Error(`lorakit: ${d} is not a folder (give a training --out folder).`);
    if (!existsSync(d) || isRunDir(d)) {
      out.push(d);
      continue;
    }
    const children = readdirSync(d, { withFileTypes: true })
      .filter((e) => e.isDirectory() && isRunDir(join(d, e.name)))
      .map((e) => join(d, e.name))
      .sort();
    out.push(...(children.length ? children : [d]));
  }
  const seen = new Set<string>();
  return out.filter((d) => {
    const key = resolve(d);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Labels for runs: the folder name, with parent folders added until every label is unique. */
export function runNames(dirs: string[]): string[] {
  const parts = dirs.map((d) => resolve(d).split(sep).filter(Boolean));
  const names = parts.map((p) => p.slice(-1).join('/'));
  for (
    let depth = 2;
    new Set(names).size < names.length && depth <= Math.max(...parts.map((p) => p.length));
    depth++
  ) {
    const counts = new Map<string, number>();
    names.forEach((n) => counts.set(n, (counts.get(n) ?? 0) + 1));
    names.forEach((n, i) => {
      if ((counts.get(n) ?? 0) > 1) names[i] = parts[i].slice(-depth).join('/');
    });
  }
  return names;
}

export interface RunSummary {
  step: number;
  totalSteps: number;
  loss: number | null;
  evalLoss: number | null;
  bestEvalLoss: number | null;
  lr: number | null;
  gradNorm: number | null;
  /** All tokens over all step time (eval time excluded). */
  tokensPerS: number | null;
  peakMemory: number | null;
  elapsed: number | null;
}

/** The final numbers of a run, exactly as they stand in metrics.jsonl. */
export function summarize(run: Pick<RunData, 'steps' | 'evals'>): RunSummary {
  const last = run.steps.at(-1);
  const lastEval = run.evals.at(-1);
  let tokens = 0;
  let seconds = 0;
  for (const s of run.steps)
    if (s.tokens_per_s > 0) {
      tokens += s.tokens;
      seconds += s.tokens / s.tokens_per_s;
    }
  return {
    step: last?.step ?? 0,
    totalSteps: last?.totalSteps ?? 0,
    loss: last?.loss ?? null,
    evalLoss: lastEval?.eval_loss ?? null,
    bestEvalLoss: run.evals.length ? Math.min(...run.evals.map((e) => e.eval_loss)) : null,
    lr: last?.lr ?? null,
    gradNorm: last?.grad_norm ?? null,
    tokensPerS: seconds > 0 ? tokens / seconds : null,
    peakMemory: run.steps.length ? Math.max(...run.steps.map((s) => s.memory)) : null,
    elapsed: last?.elapsed ?? null,
  };
}
