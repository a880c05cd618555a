// The lorakit CLI as the installed package runs it: tsc's JavaScript of the current sources (not
// through tsx, whose helpers add per-call costs the shipped code does not have), built into
// .cache/<name>/. Serving benchmarks start their servers with it. fromSource: run the sources through
// tsx instead (test/lorakit-cli.mts), skipping the build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** node arguments that start the CLI (append the command and its flags). */
export function buildCli(root: string, name: string, fromSource = false): string[] {
  if (fromSource) return ['--import', 'tsx', join(root, 'test', 'lorakit-cli.mts')];
  const out = join(root, '.cache', name);
  mkdirSync(out, { recursive: true });
  const tsc = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      join(root, 'tsconfig.build.json'),
      '--outDir',
      join(out, 'dist'),
      '--declaration',
      'false',
      '--sourceMap',
      'false',
    ],
    { cwd: root, encoding: 'utf8' },
  );
  if (!existsSync(join(out, 'dist', 'cli', 'main.js')))
    throw new Error(`tsc did not build the CLI:\n${tsc.stdout}${tsc.stderr}`);
  writeFileSync(
    join(out, 'lorakit.mjs'),
    "import { main } from './dist/cli/main.js';\nprocess.exitCode = await main(process.argv.slice(2));\n",
  );
  return [join(out, 'lorakit.mjs')];
}
