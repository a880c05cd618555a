// Command-line flags: a typed spec per command, parsed once, with clear errors (and did-you-mean).
import { quote } from '../io/quote.js';
export type FlagType = 'string' | 'number' | 'int' | 'bool' | 'list';

export interface FlagSpec {
  type: FlagType;
  help: string;
  choices?: readonly string[];
  min?: number;
  /** For number flags: the value must be strictly greater than min. */
  exclusiveMin?: boolean;
  max?: number;
  /** May be given several times (collected into a list); only for 'string'. */
  repeat?: boolean;
  /** Accepted but not listed in --help (a shared flag this command takes only one value of). */
  hidden?: boolean;
}

export type Specs = Record<string, FlagSpec>;

type ValueOf<S extends FlagSpec> = S['type'] extends 'bool'
  ? boolean
  : S['type'] extends 'number' | 'int'
    ? number
    : S['type'] extends 'list'
      ? string[]
      : S['repeat'] extends true
        ? string[]
        : string;

export type Parsed<T extends Specs> = { [K in keyof T]?: ValueOf<T[K]> } & { _: string[] };

export class UsageError extends Error {}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

export function didYouMean(name: string, known: string[]): string {
  const best = known.map((k) => [k, distance(name, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean ${best[0]}?)` : '';
}

/** Converts one raw value for flag `name`; `where` is how to name it in errors (--flag or a config key). */
export function convertValue(spec: FlagSpec, raw: unknown, where: string): unknown {
  const bad = (what: string): never => {
    throw new UsageError(`lorakit: ${where} ${what}`);
  };
  switch (spec.type) {
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return bad(`must be true or false, got '${String(raw)}'.`);
    case 'number':
    case 'int': {
      const n =
        typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(n)) return bad(`must be a number, got '${String(raw)}'.`);
      if (spec.type === 'int' && !Number.isInteger(n))
        return bad(`must be an integer, got '${String(raw)}'.`);
      if (spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min))
        return bad(`must be ${spec.exclusiveMin ? 'greater than' : 'at least'} ${spec.min}, got ${n}.`);
      if (spec.max !== undefined && n > spec.max) return bad(`must be at most ${spec.max}, got ${n}.`);
      return n;
    }
    case 'list': {
      const items = Array.isArray(raw)
        ? raw.map(String)
        : typeof raw === 'string'
          ? raw.split(',')
          : bad('must be a comma-separated list.');
      const list = items.map((s) => s.trim()).filter(Boolean);
      if (list.length === 0) return bad('must not be empty.');
      return list;
    }
    case 'string': {
      if (typeof raw !== 'string' && typeof raw !== 'number')
        return bad(`must be a string, got ${JSON.stringify(raw)}.`);
      const s = String(raw);
      if (spec.choices && !spec.choices.includes(s))
        return bad(
          `must be one of ${spec.choices.join(', ')}, got '${s}'${didYouMean(s, [...spec.choices])}.`,
        );
      return s;
    }
  }
}

/**
 * Parses `--flag value`, `--flag=value` and bare `--bool-flag`. Positional arguments go to `_` for
 * commands that take them (`positionals`: inspect PATH, dashboard DIR...); elsewhere one is refused,
 * since it is a typo or a value whose flag was lost (`--packing yes`), never something to ignore.
 */
export function parseFlags<T extends Specs>(
  argv: string[],
  specs: T,
  command: string,
  opts: { positionals?: boolean } = {},
): Parsed<T> {
  const out: Record<string, unknown> = { _: [] as string[] };
  const positional = out._ as string[];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      if (!opts.positionals)
        throw new UsageError(
          `lorakit ${command}: unexpected argument ${quote(arg)}; this command takes only --flags (see lorakit ${command} --help).`,
        );
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const spec = specs[name];
    if (!spec)
      throw new UsageError(
        `lorakit ${command}: unknown flag --${name}${didYouMean(name, Object.keys(specs))}.`,
      );
    let raw: string;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else if (spec.type === 'bool' && (i + 1 >= argv.length || !['true', 'false'].includes(argv[i + 1])))
      raw = 'true';
    else {
      if (i + 1 >= argv.length) throw new UsageError(`lorakit ${command}: flag --${name} needs a value.`);
      raw = argv[++i];
    }
    const value = convertValue(spec, raw, `--${name}`);
    if (spec.repeat)
      ((out[name] as string[] | undefined) ?? (out[name] = [])) &&
        (out[name] as string[]).push(value as string);
    else out[name] = value;
  }
  return out as Parsed<T>;
}

/** Help text for a command's flags. */
export function usage(command: string, synopsis: string, specs: Specs): string {
  const lines = Object.entries(specs)
    .filter(([, s]) => !s.hidden)
    .map(([k, s]) => `  --${k.padEnd(20)} ${s.help}${s.choices ? ` (${s.choices.join('|')})` : ''}`);
  return `usage: lorakit ${command} ${synopsis}\n\n${lines.join('\n')}\n`;
}
