// The lorakit command line: a thin layer over the library.
import { usage, UsageError, type Specs } from './args.js';

interface Command {
  help: string;
  synopsis: string;
  flags: () => Promise<Specs>;
  run: (argv: string[]) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  train: {
    help: 'fine-tune a LoRA adapter',
    synopsis: '--model M --data FILE --out DIR [flags]',
    flags: async () => (await import('./train.js')).TRAIN_FLAGS,
    run: async (a) => (await import('./train.js')).trainCommand(a),
  },
  eval: {
    help: 'mean next-token loss on a data file',
    synopsis: '--model M [--adapter DIR] --data FILE [--json]',
    flags: async () => (await import('./eval.js')).EVAL_FLAGS,
    run: async (a) => (await import('./eval.js')).evalCommand(a),
  },
  generate: {
    help: 'generate text',
    synopsis: '--model M [--adapter DIR] (--prompt TEXT | --messages JSON | --input-ids 1,2,3) [flags]',
    flags: async () => (await import('./generate.js')).GENERATE_FLAGS,
    run: async (a) => (await import('./generate.js')).generateCommand(a),
  },
  inspect: {
    help: 'describe a model, adapter, GGUF or checkpoint',
    synopsis: 'PATH [--json]',
    flags: async () => (await import('./inspect.js')).INSPECT_FLAGS,
    run: async (a) => (await import('./inspect.js')).inspectCommand(a),
  },
};

function help(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.help}`);
  return `usage: lorakit <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nRun 'lorakit <command> --help' for a command's flags.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    const planned = ['chat', 'merge', 'export', 'serve', 'dashboard'];
    process.stderr.write(
      planned.includes(name) ? `lorakit: '${name}' is not available in this version yet.\n` : `lorakit: unknown command '${name}'.\n${help()}`,
    );
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(usage(name, command.synopsis, await command.flags()));
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`${message.startsWith('lorakit') ? message : `lorakit: ${message}`}\n`);
    if (process.env.LORAKIT_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}
