// The lorakit command line: a thin layer over the library. Each command is a module in this folder
// exporting FLAGS (its flag specs), SYNOPSIS, HELP and run(argv) -> exit code.
import { usage, UsageError, type Specs } from './args.js';

export interface CommandModule {
  FLAGS: Specs;
  SYNOPSIS: string;
  HELP: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS = [
  'train',
  'eval',
  'generate',
  'chat',
  'merge',
  'export',
  'serve',
  'inspect',
  'dashboard',
  'info',
] as const;
type CommandName = (typeof COMMANDS)[number];

function isCommand(s: string): s is CommandName {
  return (COMMANDS as readonly string[]).includes(s);
}

async function load(name: CommandName): Promise<CommandModule | null> {
  try {
    return (await import(`./${name}.js`)) as CommandModule;
  } catch (e) {
    // A command whose module is not part of this build.
    if (
      e &&
      typeof e === 'object' &&
      'code' in e &&
      (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND') &&
      String(e).includes(`/${name}.`)
    )
      return null;
    throw e;
  }
}

async function help(): Promise<string> {
  const lines: string[] = [];
  for (const name of COMMANDS) {
    const m = await load(name);
    if (m) lines.push(`  ${name.padEnd(10)} ${m.HELP}`);
  }
  // The footer names the CPU kernel path: the first thing to know when a run is slower than expected.
  const { describeCpuPath } = await import('../backend/cpu/addon.js');
  return `usage: lorakit <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nRun 'lorakit <command> --help' for a command's flags.\n${describeCpuPath()}\n`;
}

/**
 * A reader that stops early (`lorakit inspect M | head`) closes the pipe, and the next write fails
 * with EPIPE. Closed stdout: nothing more can be delivered, so stop at once, quietly and with status 0,
 * as `head` asked for no more (Node ignores SIGPIPE, so without this the error surfaces as a stack
 * trace). Closed stderr: only diagnostics are lost, so the work (a training run) goes on.
 */
let pipesGuarded = false;
function stopQuietlyOnClosedPipes(): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  const closed = (e: unknown): boolean =>
    e instanceof Error && 'code' in e && (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED');
  process.stdout.on('error', (e) => {
    if (!closed(e)) throw e;
    process.exit(0);
  });
  process.stderr.on('error', (e) => {
    if (!closed(e)) throw e;
  });
}

export async function main(argv: string[]): Promise<number> {
  stopQuietlyOnClosedPipes();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    try {
      process.stdout.write(await help());
    } catch (e) {
      return reportError(e);
    }
    return name ? 0 : 2;
  }
  let command: CommandModule | null;
  try {
    command = isCommand(name) ? await load(name) : null;
  } catch (e) {
    // A module that fails as it loads: the CPU addon it imports refused LORAKIT_CPU_ISA, or is not built.
    return reportError(e);
  }
  if (!command) {
    process.stderr.write(
      isCommand(name)
        ? `lorakit: '${name}' is not available in this build.\n`
        : `lorakit: unknown command '${name}'.\n${await help()}`,
    );
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(usage(name, command.SYNOPSIS, command.FLAGS));
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    return reportError(e);
  }
}

/** One line on stderr (the stack too with LORAKIT_DEBUG); the exit code: 2 for usage, else 1. */
function reportError(e: unknown): number {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${message.startsWith('lorakit') ? message : `lorakit: ${message}`}\n`);
  if (process.env.LORAKIT_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  return e instanceof UsageError ? 2 : 1;
}
