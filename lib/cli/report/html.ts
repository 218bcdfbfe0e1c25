// The report page: one self-contained HTML file (inline CSS, no scripts, no external
// resources) that shows the run's identity, the per-stage results table, the correlation of
// critical-token entropy with validation accuracy, the charts (PNG files beside it, by
// relative path), the notes and the configuration. Every string from the data is escaped.
// Accuracies are shown in percent with one decimal.
import type { RenderedChart } from './charts.js';
import type { ReportData } from './data.js';
import type { StageRow } from './stats.js';
import * as path from 'node:path';

/** text with the five HTML-special characters escaped (safe in text and in quoted attributes). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A fraction in percent with one decimal; '–' when undefined. */
export function percent(x: number): string {
  return Number.isFinite(x) ? (100 * x).toFixed(1) : '–';
}

/** mean ± std in percent, or the mean alone when the std is undefined (one seed). */
export function meanStd(row: StageRow): string {
  return Number.isFinite(row.std) ? `${percent(row.mean)} ± ${percent(row.std)}` : percent(row.mean);
}

/** seconds as "1 h 02 min 03 s" / "4 min 05 s" / "12.3 s". */
export function formatDuration(seconds: number): string {
  if (seconds < 59.95) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  const [h, m, r] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (v: number) => String(v).padStart(2, '0');
  return h > 0 ? `${h} h ${pad(m)} min ${pad(r)} s` : `${m} min ${pad(r)} s`;
}

/** The configuration as indented JSON (bigints as strings; what cannot be serialised says so). */
function configJson(config: unknown): string {
  try {
    return JSON.stringify(config, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) ?? 'undefined';
  } catch (error) {
    return `(not serialisable: ${(error as Error).message})`;
  }
}

export interface PageParts {
  data: ReportData;
  /** Held-out accuracy per stage. */
  accuracy: StageRow[];
  /** The other evaluation metrics per stage, shown as means over seeds. */
  formatRate: StageRow[];
  meanLength: StageRow[];
  criticalEntropy: StageRow[];
  /** The correlation sentence (already worded). */
  correlation: string;
  /** The charts with their titles, paths relative to the page's directory computed here. */
  charts: Array<RenderedChart & { title: string }>;
  /** The page's directory. */
  dir: string;
}

function stageTableHtml(p: PageParts): string {
  const seeds = p.data.runs.map((r) => r.seed);
  const head = ['stage', 'accuracy (%)', 'n', ...seeds.map((s) => `seed ${s}`), 'format rate (%)', 'mean length', 'critical-token entropy'];
  const meanOf = (rows: StageRow[], stage: string) => rows.find((r) => r.stage === stage)?.mean ?? NaN;
  const fixed = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
  const rows = p.accuracy.map((row) => {
    const bySeed = seeds.map((s) => {
      const j = row.seeds.indexOf(s);
      return j < 0 ? '–' : percent(row.values[j]!);
    });
    const cells = [
      `<th scope="row">${escapeHtml(row.stage)}</th>`, `<td class="main">${meanStd(row)}</td>`, `<td>${row.n}</td>`,
      ...bySeed.map((v) => `<td>${v}</td>`),
      `<td>${percent(meanOf(p.formatRate, row.stage))}</td>`, `<td>${fixed(meanOf(p.meanLength, row.stage), 1)}</td>`,
      `<td>${fixed(meanOf(p.criticalEntropy, row.stage), 3)}</td>`,
    ];
    return `<tr>${cells.join('')}</tr>`;
  });
  if (rows.length === 0) return '<p class="empty">No held-out evaluations.</p>';
  return `<table class="stages"><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>
<p class="caption">Accuracy: mean ± sample standard deviation over seeds, then each seed's value. Format rate, length (tokens) and critical-token entropy (nats; of evaluations that produced critical tokens): means over seeds.</p>`;
}

const STYLE = `
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d1d1f; margin: 0; background: #f4f5f7; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 32px 48px; background: white; min-height: 100vh; }
h1 { font-size: 26px; margin: 4px 0 12px; }
h2 { font-size: 19px; margin: 28px 0 10px; border-bottom: 1px solid #e3e3e8; padding-bottom: 4px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.meta dt { color: #666; }
dl.meta dd { margin: 0; }
code, pre { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
dd code { background: #f2f2f5; padding: 2px 6px; border-radius: 4px; word-break: break-all; }
table.stages { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.stages th, table.stages td { padding: 5px 12px; border-bottom: 1px solid #e6e6ea; text-align: right; }
table.stages th[scope=row], table.stages thead th:first-child { text-align: left; }
table.stages thead th { background: #f2f2f5; font-weight: 600; }
td.main { font-weight: 600; }
p.caption, p.empty { color: #666; font-size: 13px; }
ul.notes li { margin: 3px 0; }
figure { margin: 18px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
details pre { background: #f7f7f9; padding: 12px; overflow: auto; max-height: 600px; }
`;

/** The page's HTML. */
export function reportHtml(p: PageParts): string {
  const d = p.data;
  const meta: Array<[string, string]> = [
    ['command', `<code>${escapeHtml(d.command)}</code>`],
    ['device', escapeHtml(d.device)],
    ['build', escapeHtml(d.build)],
    ['started', escapeHtml(d.startedAt)],
    ['duration', formatDuration(d.durationSeconds)],
    ['seeds', escapeHtml(d.runs.map((r) => r.seed).join(', ') || 'none')],
  ];
  const notes = d.notes?.length ? `<h2>Findings</h2>\n<ul class="notes">\n${d.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('\n')}\n</ul>` : '';
  const figures = p.charts.map((c) => {
    const src = path.relative(p.dir, c.file).split(path.sep).map(encodeURIComponent).join('/');
    return `<figure><img src="${escapeHtml(src)}" width="${c.width}" height="${c.height}" alt="${escapeHtml(c.title)}"></figure>`;
  });
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(d.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${escapeHtml(d.title)}</h1>
<dl class="meta">
${meta.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('\n')}
</dl>
${notes}
<h2>Held-out results per stage</h2>
${stageTableHtml(p)}
<h2>Critical-token entropy and validation accuracy</h2>
<p class="correlation">Pearson correlation of critical-token entropy with validation accuracy over the checkpoints: <strong>${escapeHtml(p.correlation)}</strong></p>
<h2>Charts</h2>
${figures.length ? figures.join('\n') : '<p class="empty">No metrics to chart.</p>'}
<h2>Configuration</h2>
<details><summary>resolved configuration (JSON)</summary><pre>${escapeHtml(configJson(d.config))}</pre></details>
</main>
</body>
</html>
`;
}
