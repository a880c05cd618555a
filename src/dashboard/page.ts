// The dashboard's one HTML page. Live, it links uPlot from the local server (served out of
// node_modules: nothing comes from a CDN); as a report, uPlot, the script and the data are inlined so
// the file works offline on its own.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CLIENT_JS, PAGE_CSS } from './client.js';
import type { RunData } from './runs.js';

const require = createRequire(import.meta.url);
const assets = new Map<string, string>();

/** uPlot's minified script or style, read from the installed `uplot` package. */
export function uplotAsset(kind: 'js' | 'css'): string {
  let text = assets.get(kind);
  if (text === undefined) {
    const file = kind === 'js' ? 'uplot/dist/uPlot.iife.min.js' : 'uplot/dist/uPlot.min.css';
    let path: string;
    try {
      path = require.resolve(file);
    } catch {
      throw new Error(
        `lorakit: the dashboard needs the 'uplot' package (${file}); reinstall lorakit's dependencies with npm install.`,
      );
    }
    text = readFileSync(path, 'utf8');
    assets.set(kind, text);
  }
  return text;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Text placed inside <script>/<style> must not close the element early. */
function inlineSafe(text: string, tag: 'script' | 'style'): string {
  return text.replace(new RegExp(`</${tag}`, 'gi'), `<\\/${tag}`);
}

/** What the page's script reads: the same shape as the server's `snapshot` event. */
export interface PageData {
  runs: (RunData & { updated?: number })[];
  /** When the data was read (ms since the epoch). */
  now: number;
}

export type PageMode = { mode: 'live' } | { mode: 'report'; data: PageData };

export function renderPage(title: string, page: PageMode): string {
  const report = page.mode === 'report';
  const uplotCss = report
    ? `<style>${inlineSafe(uplotAsset('css'), 'style')}</style>`
    : '<link rel="stylesheet" href="uplot.css">';
  const uplotJs = report
    ? `<script>${inlineSafe(uplotAsset('js'), 'script')}</script>`
    : '<script src="uplot.js"></script>';
  // JSON in a non-executed script element: only '<' needs escaping (as \u003c, still valid JSON).
  const data = report
    ? `<script id="lk-data" type="application/json">${JSON.stringify(page.data).replace(/</g, '\\u003c')}</script>\n`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
${uplotCss}
<style>${PAGE_CSS}</style>
</head>
<body>
<header>
<h1>lorakit <span>${escapeHtml(report ? 'run report' : 'dashboard')}</span></h1>
<span id="status">connecting…</span>
<label class="controls">smoothing <input id="smoothing" type="range" min="0" max="0.99" step="0.01" value="0.6"><output id="smoothing-value">0.60</output></label>
</header>
<main>
<section class="card overflow"><h2>Runs</h2><table id="summary"></table></section>
<section id="charts">
<div class="card" id="chart-loss"><h2>Loss (dashed: eval loss)</h2><div class="plot"></div></div>
<div class="card" id="chart-lr"><h2>Learning rate</h2><div class="plot"></div></div>
<div class="card" id="chart-grad_norm"><h2>Gradient norm (before clipping)</h2><div class="plot"></div></div>
<div class="card" id="chart-tokens_per_s"><h2>Tokens per second</h2><div class="plot"></div></div>
<div class="card" id="chart-memory"><h2>Tensor memory</h2><div class="plot"></div></div>
</section>
<section class="card overflow"><h2>Config</h2><table id="config-table"></table></section>
</main>
${data}${uplotJs}
<script>${inlineSafe(CLIENT_JS, 'script')}</script>
</body>
</html>
`;
}
