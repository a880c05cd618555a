// Bundles lorakit for web pages: src/browser.ts -> dist/browser/lorakit.js, one ES module (esbuild,
// platform 'browser'). Two rules make it a browser build:
//  - a module with a sibling `<name>.browser.ts` is replaced by that twin (the native addons, which a
//    page cannot load, and the tokenizer's folder reader); each twin checks it exports what the Node
//    module does;
//  - a Node built-in (node:fs, path, worker_threads …) reached from the entry fails the build, naming
//    the chain of imports that reached it. The `webgpu` npm package (Dawn, for Node) stays out: pages
//    use navigator.gpu, and gpu.ts imports the package only in Node.
// The example page (examples/browser) is bundled the same way, its script with the library in one file.
//   npm run build:browser [-- --minify] [-- --outfile FILE] [-- --entry FILE]
//   npm run build:example   (examples/browser/main.ts -> examples/browser/dist/main.js and main.css)
import { builtinModules } from 'node:module';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface BrowserBuildOptions {
  /** The entry module (src/browser.ts). */
  entry?: string;
  /** Where the bundle goes (dist/browser/lorakit.js). */
  outfile?: string;
  minify?: boolean;
}

export interface BrowserBuild {
  outfile: string;
  bytes: number;
  /** Project files bundled (relative to the project root), twins included. */
  inputs: string[];
  /** The Node modules that were replaced by their browser twins. */
  twins: string[];
}

const BUILTINS = new Set(builtinModules.map((m) => m.replace(/^node:/, '')));

/** Whether an import specifier names a Node built-in (node:fs, fs, fs/promises …). */
function isNodeBuiltin(spec: string): boolean {
  return spec.startsWith('node:') || BUILTINS.has(spec.split('/')[0]);
}

const rel = (p: string): string => relative(projectRoot, p) || p;

/** The browser twin of a resolved module, if it has one: foo.ts -> foo.browser.ts. */
function twinOf(path: string): string | null {
  if (!path.endsWith('.ts') || path.endsWith('.browser.ts') || path.includes('/node_modules/')) return null;
  const twin = path.replace(/\.ts$/, '.browser.ts');
  return existsSync(twin) ? twin : null;
}

function browserRules(twins: Set<string>): Plugin {
  // Who first imported each module, to name the chain that reached a Node built-in.
  const importedBy = new Map<string, string>();
  const chain = (from: string): string => {
    const links = [rel(from)];
    for (let at = importedBy.get(from); at && links.length < 40; at = importedBy.get(at)) links.push(rel(at));
    return links.join(' <- ');
  };
  return {
    name: 'lorakit-browser',
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === 'lorakit-resolving') return undefined;
        if (args.path === 'webgpu') return { path: 'webgpu', external: true };
        if (isNodeBuiltin(args.path))
          return {
            errors: [
              {
                text: `lorakit: the browser bundle reaches the Node module '${args.path}' (imported by ${chain(args.importer)}); keep it behind a Node entry point or give the importing module a .browser.ts twin.`,
              },
            ],
          };
        const r = await b.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: 'lorakit-resolving',
        });
        if (r.errors.length > 0 || r.external) return r;
        const twin = twinOf(r.path);
        if (twin) twins.add(rel(r.path));
        const path = twin ?? r.path;
        if (args.importer && !importedBy.has(path)) importedBy.set(path, args.importer);
        return { path, sideEffects: r.sideEffects };
      });
    },
  };
}

/** Builds the bundle; rejects (esbuild's errors, printed) when a rule is broken. */
export async function buildBrowser(opts: BrowserBuildOptions = {}): Promise<BrowserBuild> {
  const entry = resolve(opts.entry ?? join(projectRoot, 'src', 'browser.ts'));
  const outfile = resolve(opts.outfile ?? join(projectRoot, 'dist', 'browser', 'lorakit.js'));
  const twins = new Set<string>();
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: opts.minify === true,
    metafile: true,
    legalComments: 'eof',
    logLevel: 'silent',
    plugins: [browserRules(twins)],
  });
  const inputs = Object.keys(result.metafile.inputs).map((p) => rel(resolve(projectRoot, p)));
  return { outfile, bytes: statSync(outfile).size, inputs, twins: [...twins].sort() };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  buildBrowser({
    minify: process.argv.includes('--minify'),
    outfile: arg('--outfile'),
    entry: arg('--entry'),
  }).then(
    (r) => {
      process.stdout.write(
        `${rel(r.outfile)}: ${(r.bytes / 1024).toFixed(0)} KiB from ${r.inputs.length} modules (browser twins for ${r.twins.join(', ')})\n`,
      );
    },
    (e: unknown) => {
      const errors = (e as { errors?: { text: string; location?: { file: string; line: number } | null }[] })
        .errors;
      if (errors?.length)
        for (const x of errors)
          process.stderr.write(`${x.location ? `${x.location.file}:${x.location.line}: ` : ''}${x.text}\n`);
      else process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.stderr.write('lorakit: the browser bundle was not built.\n');
      process.exit(1);
    },
  );
}
