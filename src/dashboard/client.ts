// The page's script and style, as text: the live dashboard and the offline report run the same code.
// Plain ES5-style browser JavaScript in a string (no build step, no framework; uPlot draws the
// charts). It writes nothing but the DOM. Kept free of backticks and `${` so it can live in a
// template literal; String.raw keeps its backslashes.
//
// Data in: live mode listens to the server's event stream (api/events: `snapshot`, then `records`,
// `config` and `reset` events); the report reads the JSON in <script id="lk-data">. Both carry
// { runs: [{ name, dir, steps, evals, config, updated }], now }.
// For tests and curious users, window.lorakit exposes the state and plotted(chartId), the exact
// points each uPlot chart holds.

export const PAGE_CSS = String.raw`
:root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --bg: #f7f8fa; --card: #fff; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 24px; padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 10; }
header h1 { font-size: 18px; margin: 0; }
header h1 span { color: var(--muted); font-weight: 400; }
#status { color: var(--muted); }
#status.live::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: #16a34a; margin-right: 6px; }
#status.down { color: #b45309; }
.controls { display: flex; align-items: center; gap: 8px; margin-left: auto; }
.controls input { width: 160px; }
main { padding: 16px 20px; display: grid; gap: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.card h2 { font-size: 14px; margin: 0 0 8px; font-weight: 600; }
#charts { display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); }
#chart-loss { grid-column: 1 / -1; }
.plot { min-height: 60px; }
.empty { color: var(--muted); padding: 20px 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 4px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; }
td.name, th.name, #config-table td, #config-table th { text-align: left; }
#config-table td { white-space: normal; word-break: break-all; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
#config-table td.diff { background: #fff7d6; }
#config-table tr > th:first-child { width: 1%; padding-right: 24px; }
.chip { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 6px 0 4px; vertical-align: middle; }
.st-running { color: #16a34a; } .st-finished { color: var(--accent); } .st-stopped, .st-waiting { color: var(--muted); }
.overflow { overflow-x: auto; }
.u-legend { font-size: 12px; text-align: left; }
.u-legend .u-series > * { padding: 1px 4px; }
`;

export const CLIENT_JS = String.raw`
(function () {
  'use strict';
  var COLORS = ['#2563eb', '#dc2626', '#16a34a', '#ea580c', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#854d0e', '#475569'];
  function num(d) { return function (v) { return v == null ? '\u2013' : v.toFixed(d); }; }
  function sci(v) { return v == null ? '\u2013' : v.toExponential(2); }
  function int(v) { return v == null ? '\u2013' : Math.round(v).toLocaleString('en-US'); }
  function bytes(v) {
    if (v == null) return '\u2013';
    if (v >= 1073741824) return (v / 1073741824).toFixed(2) + ' GiB';
    if (v >= 1048576) return (v / 1048576).toFixed(1) + ' MiB';
    return (v / 1024).toFixed(0) + ' KiB';
  }
  function duration(s) {
    if (s == null || !isFinite(s)) return '\u2013';
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
    function p(n) { return (n < 10 ? '0' : '') + n; }
    return h > 0 ? h + 'h' + p(m) + 'm' : m > 0 ? m + 'm' + p(sec) + 's' : sec + 's';
  }
  // Byte ticks at powers of two (512 KiB, 1 MiB, ...).
  var POW2 = [];
  for (var p2 = 1; p2 <= 1099511627776; p2 *= 2) POW2.push(p2);
  var CHARTS = [
    { id: 'loss', key: 'loss', smooth: true, evals: true, fmt: num(4) },
    { id: 'lr', key: 'lr', smooth: false, fmt: sci },
    { id: 'grad_norm', key: 'grad_norm', smooth: true, fmt: num(3) },
    { id: 'tokens_per_s', key: 'tokens_per_s', smooth: true, fmt: int },
    { id: 'memory', key: 'memory', smooth: false, fmt: bytes, incrs: POW2 }
  ];

  var dataEl = document.getElementById('lk-data');
  var lk = window.lorakit = {
    mode: dataEl ? 'report' : 'live',
    runs: [],
    hidden: {},
    smoothing: 0.6,
    charts: {},
    renders: 0,
    connected: false
  };

  // Same rule as src/dashboard/runs.ts applyRecords: a step at or before the last one seen means the
  // run restarted or resumed into the same folder; later lines replace earlier ones from that step on.
  function apply(run, records) {
    for (var i = 0; i < records.length; i++) {
      var r = records[i];
      if (typeof r.eval_loss === 'number') {
        while (run.evals.length && run.evals[run.evals.length - 1].step >= r.step) run.evals.pop();
        run.evals.push(r);
      } else if (typeof r.loss === 'number') {
        if (run.steps.length && run.steps[run.steps.length - 1].step >= r.step) {
          run.steps = run.steps.filter(function (s) { return s.step < r.step; });
          run.evals = run.evals.filter(function (e) { return e.step < r.step; });
        }
        run.steps.push(r);
      }
    }
  }
  lk.apply = apply;

  // TensorBoard's smoothing: an exponential moving average, debiased so early points are not pulled
  // towards zero. Weight 0 returns the values unchanged.
  function smooth(ys, w) {
    var out = new Array(ys.length), last = 0, n = 0;
    for (var i = 0; i < ys.length; i++) {
      var y = ys[i];
      if (y == null || !isFinite(y) || w <= 0) { out[i] = y; continue; }
      last = last * w + (1 - w) * y;
      n++;
      out[i] = last / (1 - Math.pow(w, n));
    }
    return out;
  }
  lk.smooth = smooth;

  function color(i) { return COLORS[i % COLORS.length]; }
  function alpha(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return 'rgba(' + (n >> 16) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + a + ')';
  }

  // uPlot wants one shared, sorted x array: the union of the visible runs' steps, null where a run
  // has no value at a step.
  function chartData(def) {
    var runs = [], seen = {}, xs = [];
    lk.runs.forEach(function (run, ri) { if (!lk.hidden[run.name]) runs.push([run, ri]); });
    function addX(x) { if (!seen[x]) { seen[x] = true; xs.push(x); } }
    runs.forEach(function (p) {
      p[0].steps.forEach(function (s) { if (typeof s[def.key] === 'number') addX(s.step); });
      if (def.evals) p[0].evals.forEach(function (e) { addX(e.step); });
    });
    xs.sort(function (a, b) { return a - b; });
    var at = {};
    xs.forEach(function (x, i) { at[x] = i; });
    var data = [xs], series = [{ label: 'step' }], meta = [null];
    function column(rows, get) {
      var col = new Array(xs.length).fill(null);
      rows.forEach(function (r) { var v = get(r); if (typeof v === 'number') col[at[r.step]] = v; });
      return col;
    }
    function fmtValue(u, v) { return v == null ? '\u2013' : def.fmt(v); }
    runs.forEach(function (p) {
      var run = p[0], c = color(p[1]);
      var rows = run.steps.filter(function (s) { return typeof s[def.key] === 'number'; });
      var raw = column(rows, function (s) { return s[def.key]; });
      var smoothing = def.smooth && lk.smoothing > 0;
      data.push(raw);
      meta.push({ run: run.name, kind: 'raw' });
      series.push({ label: run.name + (smoothing ? ' (raw)' : ''), stroke: smoothing ? alpha(c, 0.3) : c, width: smoothing ? 1 : 2, spanGaps: true, value: fmtValue });
      if (smoothing) {
        // Smooth over the run's own steps, then place on the shared x axis.
        var sm = smooth(rows.map(function (s) { return s[def.key]; }), lk.smoothing);
        var col = new Array(xs.length).fill(null);
        rows.forEach(function (s, i) { col[at[s.step]] = sm[i]; });
        data.push(col);
        meta.push({ run: run.name, kind: 'smoothed' });
        series.push({ label: run.name, stroke: c, width: 2, spanGaps: true, value: fmtValue });
      }
      if (def.evals) {
        data.push(column(run.evals, function (e) { return e.eval_loss; }));
        meta.push({ run: run.name, kind: 'eval' });
        series.push({ label: run.name + ' eval', stroke: c, width: 2, dash: [6, 4], spanGaps: true, points: { show: true, size: 7, fill: '#fff', stroke: c }, value: fmtValue });
      }
    });
    return { data: data, series: series, meta: meta };
  }

  // Steps are whole numbers: ticks only at 1, 2, 5 x 10^k.
  var STEP_INCRS = [];
  for (var e10 = 1; e10 <= 1e9; e10 *= 10) STEP_INCRS.push(e10, 2 * e10, 5 * e10);

  function chartWidth(el) { return Math.max(280, el.clientWidth); }

  function renderChart(def) {
    var box = document.getElementById('chart-' + def.id);
    var el = box.querySelector('.plot');
    var d = chartData(def);
    var u = lk.charts[def.id];
    if (d.data[0].length === 0) {
      if (u) { u.destroy(); delete lk.charts[def.id]; }
      el.innerHTML = '';
      var p = document.createElement('div');
      p.className = 'empty';
      p.textContent = lk.runs.length ? 'waiting for metrics\u2026' : 'no runs';
      el.appendChild(p);
      return;
    }
    var signature = d.series.map(function (s) { return s.label; }).join('|');
    if (u && u.lkSignature === signature) {
      u.lkMeta = d.meta;
      u.setData(d.data);
      return;
    }
    if (u) u.destroy();
    el.innerHTML = '';
    var yAxis = { size: 70, stroke: '#6b7385', grid: { stroke: '#eef0f4' }, values: function (u, vals) { return vals.map(function (v) { return def.fmt(v); }); } };
    if (def.incrs) yAxis.incrs = def.incrs;
    u = new uPlot({
      width: chartWidth(el),
      height: def.id === 'loss' ? 300 : 220,
      scales: { x: { time: false } },
      series: d.series,
      axes: [
        { label: 'step', stroke: '#6b7385', grid: { stroke: '#eef0f4' }, incrs: STEP_INCRS },
        yAxis
      ],
      cursor: { sync: { key: 'lorakit' } },
      legend: { live: true }
    }, d.data, el);
    u.lkSignature = signature;
    u.lkMeta = d.meta;
    lk.charts[def.id] = u;
  }

  /** The points a chart holds, per series: [[step, value], ...] without the gaps. */
  lk.plotted = function (id) {
    var u = lk.charts[id];
    if (!u) return [];
    return u.series.slice(1).map(function (s, i) {
      var xs = u.data[0], ys = u.data[i + 1], pts = [];
      for (var j = 0; j < xs.length; j++) if (ys[j] != null) pts.push([xs[j], ys[j]]);
      return { label: s.label, run: u.lkMeta[i + 1].run, kind: u.lkMeta[i + 1].kind, points: pts };
    });
  };

  function summary(run) {
    var last = run.steps[run.steps.length - 1] || null;
    var lastEval = run.evals[run.evals.length - 1] || null;
    var tokens = 0, seconds = 0, peak = null, best = null;
    run.steps.forEach(function (s) {
      if (s.tokens_per_s > 0) { tokens += s.tokens; seconds += s.tokens / s.tokens_per_s; }
      if (peak == null || s.memory > peak) peak = s.memory;
    });
    run.evals.forEach(function (e) { if (best == null || e.eval_loss < best) best = e.eval_loss; });
    var status = !last ? 'waiting' : last.step >= last.totalSteps ? 'finished'
      : lk.mode === 'live' && Date.now() - (run.updated || 0) < 30000 ? 'running' : 'stopped';
    return {
      status: status,
      step: last ? last.step : null,
      totalSteps: last ? last.totalSteps : null,
      loss: last ? last.loss : null,
      eval_loss: lastEval ? lastEval.eval_loss : null,
      best_eval_loss: best,
      lr: last ? last.lr : null,
      grad_norm: last ? last.grad_norm : null,
      tokens_per_s: seconds > 0 ? tokens / seconds : null,
      memory: peak,
      elapsed: last ? last.elapsed : null,
      eta: last && status === 'running' ? (last.elapsed / last.step) * (last.totalSteps - last.step) : null
    };
  }
  lk.summary = summary;

  var COLUMNS = [
    ['step', 'step', function (v, s) { return v == null ? '\u2013' : v + ' / ' + s.totalSteps; }],
    ['loss', 'loss', num(4)],
    ['eval_loss', 'eval loss', num(4)],
    ['best_eval_loss', 'best eval', num(4)],
    ['lr', 'lr', sci],
    ['grad_norm', 'grad norm', num(3)],
    ['tokens_per_s', 'tokens/s', int],
    ['memory', 'peak memory', bytes],
    ['elapsed', 'elapsed', duration],
    ['eta', 'ETA', duration]
  ];

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function renderSummary() {
    var table = document.getElementById('summary');
    table.innerHTML = '';
    var head = el('tr');
    head.appendChild(el('th', 'run', 'name'));
    head.appendChild(el('th', 'status', 'name'));
    COLUMNS.forEach(function (c) { head.appendChild(el('th', c[1])); });
    table.appendChild(head);
    lk.runs.forEach(function (run, ri) {
      var s = summary(run);
      var tr = el('tr');
      tr.setAttribute('data-run', run.name);
      var name = el('td', null, 'name');
      var box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = !lk.hidden[run.name];
      box.title = 'show on the charts';
      box.addEventListener('change', function () { lk.hidden[run.name] = !box.checked; renderCharts(); });
      var chip = el('span', null, 'chip');
      chip.style.background = color(ri);
      name.appendChild(box);
      name.appendChild(chip);
      name.appendChild(el('span', run.name));
      name.title = run.dir || '';
      tr.appendChild(name);
      tr.appendChild(el('td', s.status, 'name st-' + s.status));
      COLUMNS.forEach(function (c) {
        var v = s[c[0]];
        var td = el('td', c[2](v, s));
        td.setAttribute('data-key', c[0]);
        if (v != null) td.setAttribute('data-value', String(v));
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
  }

  function flatten(obj, prefix, out) {
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k], key = prefix ? prefix + '.' + k : k;
      if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
      else if (v !== undefined) out[key] = Array.isArray(v) ? v.join(',') : String(v);
    });
    return out;
  }

  function renderConfig() {
    var table = document.getElementById('config-table');
    table.innerHTML = '';
    var flat = lk.runs.map(function (r) { return flatten(r.config, '', {}); });
    var keys = [];
    flat.forEach(function (f) { Object.keys(f).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
    if (!keys.length) {
      table.appendChild(el('tr')).appendChild(el('td', 'no run.json or checkpoint yet', 'empty'));
      return;
    }
    var head = el('tr');
    head.appendChild(el('th', 'key'));
    lk.runs.forEach(function (r) { head.appendChild(el('th', r.name)); });
    table.appendChild(head);
    keys.forEach(function (k) {
      var tr = el('tr');
      tr.appendChild(el('th', k));
      var vals = flat.map(function (f) { return f[k] == null ? '' : f[k]; });
      var differs = vals.some(function (v) { return v !== vals[0]; });
      vals.forEach(function (v) { tr.appendChild(el('td', v, differs ? 'diff' : '')); });
      table.appendChild(tr);
    });
  }

  function renderCharts() { CHARTS.forEach(renderChart); }

  function render() {
    pending = false;
    renderSummary();
    renderCharts();
    renderConfig();
    lk.renders++;
  }
  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    setTimeout(render, 50);
  }

  function setStatus(text, cls) {
    var s = document.getElementById('status');
    s.textContent = text;
    s.className = cls || '';
  }

  function setRuns(runs, now) {
    var skew = now ? Date.now() - now : 0;
    lk.runs = runs.map(function (r) {
      return { name: r.name, dir: r.dir, steps: r.steps, evals: r.evals, config: r.config, updated: r.updated ? r.updated + skew : 0 };
    });
  }

  var slider = document.getElementById('smoothing');
  var shown = document.getElementById('smoothing-value');
  function readSlider() { lk.smoothing = Number(slider.value); shown.textContent = lk.smoothing.toFixed(2); }
  slider.addEventListener('input', function () { readSlider(); renderCharts(); });
  readSlider();

  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      CHARTS.forEach(function (def) {
        var u = lk.charts[def.id];
        if (u) u.setSize({ width: chartWidth(document.querySelector('#chart-' + def.id + ' .plot')), height: u.height });
      });
    }, 100);
  });

  if (lk.mode === 'report') {
    var doc = JSON.parse(dataEl.textContent);
    setRuns(doc.runs, 0);
    setStatus('report \u00b7 written ' + new Date(doc.now).toLocaleString());
    render();
    return;
  }

  function connect() {
    var es = new EventSource('api/events');
    es.addEventListener('snapshot', function (e) {
      var d = JSON.parse(e.data);
      setRuns(d.runs, d.now);
      lk.connected = true;
      setStatus('live', 'live');
      schedule();
    });
    es.addEventListener('records', function (e) {
      var d = JSON.parse(e.data), run = lk.runs[d.run];
      if (!run) return;
      apply(run, d.records);
      run.updated = Date.now();
      schedule();
    });
    es.addEventListener('config', function (e) {
      var d = JSON.parse(e.data), run = lk.runs[d.run];
      if (run) { run.config = d.config; schedule(); }
    });
    es.addEventListener('reset', function (e) {
      var d = JSON.parse(e.data), run = lk.runs[d.run];
      if (!run) return;
      run.steps = d.steps;
      run.evals = d.evals;
      run.updated = Date.now();
      schedule();
    });
    es.onerror = function () { lk.connected = false; setStatus('reconnecting\u2026', 'down'); };
  }
  connect();
  setInterval(renderSummary, 5000);
  render();
})();
`;
