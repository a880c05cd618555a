// The lorakit command line: a thin layer over the library.
import { UsageError } from './args.js';

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  train: { run: async (a) => (await import('./train.js')).trainCommand(a), help: 'fine-tune a LoRA adapter' },
  eval: { run: async (a) => (await import('./eval.js')).evalCommand(a), help: 'mean next-token loss on a data file' },
  generate: { run: async (a) => (await import('./generate.js')).generateCommand(a), help: 'generate text' },
  inspect: { run: async (a) => (await import('./inspect.js')).inspectCommand(a), help: 'describe a model, adapter, GGUF or checkpoint' },
};

function help(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.help}`);
  return `usage: lorakit <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nRun 'lorakit <command> --help' for a command's flags.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(help());
    return command ? 0 : 2;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    const planned = ['chat', 'merge', 'export', 'serve', 'dashboard'];
    process.stderr.write(
      planned.includes(command)
        ? `lorakit: '${command}' is not available in this version yet.\n`
        : `lorakit: unknown command '${command}'.\n${help()}`,
    );
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    const mod = await import(`./${command}.js`);
    const specs = Object.values(mod).find((v) => v && typeof v === 'object' && !Array.isArray(v)) as Record<string, { help: string }> | undefined;
    process.stdout.write(`usage: lorakit ${command} [flags]\n\n${Object.entries(specs ?? {}).map(([k, s]) => `  --${k.padEnd(20)} ${s.help}`).join('\n')}\n`);
    return 0;
  }
  try {
    return await entry.run(rest);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`${message.startsWith('lorakit') ? message : `lorakit: ${message}`}\n`);
    if (process.env.LORAKIT_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}
