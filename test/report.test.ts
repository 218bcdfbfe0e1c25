// The run report: stageTable and correlation against hand-computed values and independent
// float64 arithmetic; writeReport on synthetic runs of the R1V3 recipe (two seeds, SFT and RL
// stages, a control, checkpoints) — real PNGs with content, an HTML page that references each
// image and shows the right numbers, escapes hostile strings and loads nothing external.
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';

import { correlation, stageTable, writeReport, type ReportData, type ReportRun } from '../lib/cli/report/index.js';
import { expectR1VError, rng } from './helpers.js';

/** [name, kind, steps]; the control continues SFT from the cold-start model instead of RL. */
const STAGES: Array<[string, 'sft' | 'rl', number]> = [
  ['text-sft', 'sft', 18], ['connector-sft', 'sft', 12], ['cold-start-sft', 'sft', 16], ['grpo', 'rl', 30], ['connector-rl', 'rl', 12],
];
const CONTROL: [string, 'sft', number] = ['control-sft', 'sft', 30];

/** One seed's synthetic run: noisy but plausible learning curves, a checkpoint every 6 steps. */
function syntheticRun(seed: number, next: () => number): ReportRun {
  const steps: ReportRun['steps'] = [];
  const checkpoints: ReportRun['checkpoints'] = [];
  const evaluations: ReportRun['evaluations'] = [];
  let step = 0, skill = 0.1 + 0.1 * next();
  const run = ([stage, kind, count]: [string, 'sft' | 'rl', number], start: number, startSkill: number) => {
    step = start;
    skill = startSkill;
    for (let s = 1; s <= count; s++) {
      step++;
      skill = Math.min(0.95, skill + (kind === 'rl' ? 0.012 : 0.006) * (0.5 + next()));
      const record: Record<string, number | string> = { step, stage, stageStep: s, kind, grad_norm: 0.5 + next() };
      if (kind === 'sft') record.loss = 2.5 * (1 - skill) + 0.2 * next();
      else {
        record.accuracy = Math.min(1, Math.max(0, skill + 0.15 * (next() - 0.5)));
        record.format_rate = Math.min(1, 0.7 + 0.3 * skill + 0.05 * next());
        record.reward_mean = record.accuracy + 0.5 * record.format_rate;
        record.entropy = 1.2 - 0.6 * skill + 0.1 * next();
        record.critical_entropy = 2.2 - 1.1 * skill + 0.2 * next();
        record.critical_count = 20 + Math.floor(40 * next());
        record.response_length_mean = 60 + 40 * next();
      }
      steps.push(record);
      if (s % 6 === 0 || s === count) {
        checkpoints.push({
          step, stage, val_accuracy: Math.min(1, Math.max(0, skill + 0.1 * (next() - 0.5))), val_format: 0.8 + 0.2 * next(),
          critical_entropy: 2.3 - 1.2 * skill + 0.25 * next(), critical_count: 10 + Math.floor(30 * next()),
        });
      }
    }
    evaluations.push({
      stage, accuracy: Math.min(1, Math.max(0, skill + 0.08 * (next() - 0.5))), format_rate: 0.75 + 0.25 * next(),
      mean_length: 50 + 50 * next(), critical_entropy: 2.3 - 1.2 * skill + 0.2 * next(), critical_count: 100 + Math.floor(100 * next()),
    });
  };
  for (const st of STAGES.slice(0, 3)) run(st, step, skill);
  const coldStart = { step, skill };
  for (const st of STAGES.slice(3)) run(st, step, skill);
  run(CONTROL, coldStart.step, coldStart.skill);
  return { seed, steps, checkpoints, evaluations };
}

function reportData(next: () => number, overrides: Partial<ReportData> = {}): ReportData {
  return {
    title: 'r1v demo: visual arithmetic on MNIST digits',
    command: 'r1v demo --seeds 2 --out runs/demo',
    startedAt: '2026-03-14T09:26:53Z', durationSeconds: 3725.4,
    device: 'cpu (AMD EPYC, 2 threads)', build: 'r1v 0.1.0, CUDA build: no',
    config: { seeds: [11, 23], stages: STAGES.map(([name, kind, steps]) => ({ name, kind, steps })), control: CONTROL[0] },
    runs: [syntheticRun(11, next), syntheticRun(23, next)],
    notes: ['GRPO beats the cold-start model by 12.5 points', 'connector-only RL keeps the gain'],
    ...overrides,
  };
}

/** float64 mean and sample standard deviation, written out independently. */
function meanAndStd(values: number[]): [number, number] {
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  let ss = 0;
  for (const v of values) ss += (v - mean) * (v - mean);
  return [mean, Math.sqrt(ss / (values.length - 1))];
}

/** Pearson's r by the textbook one-pass formula (different arithmetic from the library's). */
function pearson(xs: number[], ys: number[]): number {
  const n = xs.length;
  let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i]!; sy += ys[i]!; sxx += xs[i]! ** 2; syy += ys[i]! ** 2; sxy += xs[i]! * ys[i]!;
  }
  return (n * sxy - sx * sy) / Math.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
}

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'r1v-report-'));
  tempDirs.push(dir);
  return dir;
}

describe('report', function () {
  after(async () => {
    for (const dir of tempDirs) await fsp.rm(dir, { recursive: true, force: true });
  });

  describe('correlation', () => {
    it('matches hand-computed values', () => {
      // x = 1..4, y = 2, 4, 5, 9: mean x 2.5, mean y 5; Sxy = 11, Sxx = 5, Syy = 26.
      assert.ok(Math.abs(correlation([1, 2, 3, 4], [2, 4, 5, 9]) - 11 / Math.sqrt(5 * 26)) < 1e-14);
      assert.equal(correlation([1, 2, 3], [6, 4, 2]), -1);
      assert.equal(correlation([0.5, 1.5], [3, 7]), 1);
    });

    it('matches an independent Pearson on random data, and is invariant to shift and scale', () => {
      const next = rng('report.correlation');
      for (let trial = 0; trial < 20; trial++) {
        const n = 2 + Math.floor(next() * 40);
        const xs = Array.from({ length: n }, () => next() * 4 - 1);
        const ys = xs.map((x) => (next() - 0.3) * x + next());
        const r = correlation(xs, ys);
        assert.ok(Math.abs(r - pearson(xs, ys)) < 1e-9, `n ${n}: ${r} vs ${pearson(xs, ys)}`);
        const a = 1e6 * (next() + 0.1), b = 1e9 * next();
        assert.ok(Math.abs(correlation(xs.map((x) => -a * x + b), ys) + r) < 1e-6);
      }
    });

    it('is NaN when undefined, and accurate at extreme magnitudes', () => {
      assert.ok(Number.isNaN(correlation([], [])));
      assert.ok(Number.isNaN(correlation([3], [4])));
      assert.ok(Number.isNaN(correlation([0.1, 0.1, 0.1], [1, 2, 3])));
      assert.ok(Number.isNaN(correlation([1, 2, 3], [5, 5, 5])));
      assert.ok(Math.abs(correlation([1e300, 2e300, 3e300], [1, 2, 4]) - pearson([1, 2, 3], [1, 2, 4])) < 1e-12);
      assert.ok(Math.abs(correlation([1e-300, 2e-300, 3e-300], [4, 2, 1]) - pearson([1, 2, 3], [4, 2, 1])) < 1e-12);
    });

    it('rejects mismatched or non-finite input', () => {
      expectR1VError(() => correlation([1, 2], [1]), 'SHAPE', /correlation: ys has 1 entries, need 2/);
      expectR1VError(() => correlation([1, NaN], [1, 2]), 'ARGUMENT', /correlation: xs\[1\] must be a finite number/);
      expectR1VError(() => correlation('1,2' as unknown as number[], [1, 2]), 'ARGUMENT', /correlation: xs must be an array/);
    });
  });

  describe('stageTable', () => {
    const evaluation = (stage: string, accuracy: number) => ({ stage, accuracy, format_rate: 0.9, mean_length: 40, critical_entropy: 1.5, critical_count: 12 });

    it('gives mean ± sample std per stage over seeds, by hand', () => {
      const runs: ReportRun[] = [
        { seed: 1, steps: [], checkpoints: [], evaluations: [evaluation('sft', 0.5), evaluation('grpo', 0.75)] },
        { seed: 2, steps: [], checkpoints: [], evaluations: [evaluation('sft', 0.25), evaluation('grpo', 0.5), evaluation('control', 0.625)] },
        { seed: 3, steps: [], checkpoints: [], evaluations: [evaluation('grpo', 1)] },
      ];
      const table = stageTable(runs);
      assert.deepEqual(table.map((t) => t.stage), ['sft', 'grpo', 'control']);
      // sft: 0.5, 0.25 → mean 0.375, std sqrt(2·0.125²/1) = 0.125·√2.
      assert.equal(table[0]!.mean, 0.375);
      assert.ok(Math.abs(table[0]!.std - 0.125 * Math.SQRT2) < 1e-15);
      assert.deepEqual([table[0]!.n, table[0]!.values, table[0]!.seeds], [2, [0.5, 0.25], [1, 2]]);
      // grpo: 0.75, 0.5, 1 → mean 0.75, std sqrt((0 + 0.0625 + 0.0625)/2) = 0.25.
      assert.equal(table[1]!.mean, 0.75);
      assert.ok(Math.abs(table[1]!.std - 0.25) < 1e-15);
      assert.deepEqual([table[1]!.n, table[1]!.values, table[1]!.seeds], [3, [0.75, 0.5, 1], [1, 2, 3]]);
      // control: one seed → std undefined.
      assert.deepEqual([table[2]!.mean, table[2]!.n, table[2]!.values], [0.625, 1, [0.625]]);
      assert.ok(Number.isNaN(table[2]!.std));
    });

    it('rejects bad runs with the path of the bad field', () => {
      const run = (evaluations: unknown[], seed: unknown = 1) => ({ seed, steps: [], checkpoints: [], evaluations }) as ReportRun;
      expectR1VError(() => stageTable([run([evaluation('a', 1.5)])]), 'ARGUMENT', /stageTable: runs\[0\]\.evaluations\[0\]\.accuracy must be a finite number ≥ 0 ≤ 1/);
      expectR1VError(() => stageTable([run([evaluation('a', 0.5), evaluation('a', 0.6)])]), 'ARGUMENT', /evaluated twice/);
      expectR1VError(() => stageTable([run([]), run([])]), 'ARGUMENT', /runs\[1\]\.seed 1 repeats/);
      expectR1VError(() => stageTable([run([], -1)]), 'ARGUMENT', /runs\[0\]\.seed must be an integer/);
      expectR1VError(() => stageTable([run([{ stage: 'a', accuracy: 0.5 }])]), 'ARGUMENT', /evaluations\[0\]\.format_rate is missing/);
      expectR1VError(() => stageTable([{ ...run([]), steps: [{ stage: 'a' }] } as unknown as ReportRun]), 'ARGUMENT', /steps\[0\]\.step must be a finite number/);
      expectR1VError(() => stageTable({} as ReportRun[]), 'ARGUMENT', /stageTable: runs must be an array/);
    });
  });
  describe('writeReport', () => {
    it('writes real PNG charts and a page with the right numbers', async function () {
      this.timeout(120_000);
      const next = rng('report.writeReport');
      const data = reportData(next);
      // No critical tokens: no critical-token entropy (the trainer writes 0), left out of the means and the correlation.
      const [run0, run1] = data.runs as [ReportRun, ReportRun];
      run1.evaluations.find((e) => e.stage === 'grpo')!.critical_count = 0;
      run0.checkpoints[2]!.critical_count = 0;
      run0.steps[3]!.loss = null; // a skipped step: NaN, which JSON writes as null
      const dir = await tempDir();
      const out = await writeReport(dir, data);
      assert.equal(out.html, path.join(dir, 'report.html'));
      assert.deepEqual(out.images.map((f) => path.basename(f)),
        ['report-loss.png', 'report-reward.png', 'report-accuracy.png', 'report-entropy.png', 'report-stages.png', 'report-critical-entropy.png']);
      const html = await fsp.readFile(out.html, 'utf8');

      for (const image of out.images) {
        assert.equal(path.dirname(image), dir);
        const meta = await sharp(image).metadata();
        assert.equal(meta.format, 'png');
        assert.ok(meta.width! > 100 && meta.height! > 100, `${image}: ${meta.width}×${meta.height}`);
        const { data: pixels, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
        // Decoded pixels: many colours (lines, marks, text on white) and a fair share of ink.
        const colours = new Set<number>();
        let inked = 0;
        for (let p = 0; p < pixels.length; p += info.channels) {
          colours.add((pixels[p]! << 16) | (pixels[p + 1]! << 8) | pixels[p + 2]!);
          if (pixels[p]! + pixels[p + 1]! + pixels[p + 2]! < 600) inked++;
        }
        assert.ok(colours.size > 20, `${image}: ${colours.size} colours`);
        assert.ok(inked > 0.01 * info.width * info.height && inked < 0.6 * info.width * info.height, `${image}: ${inked} inked pixels`);
        assert.ok(html.includes(`<img src="${path.basename(image)}"`), `page lacks ${image}`);
      }

      // The stage table: mean ± std of held-out accuracy (percent, one decimal) and each seed's value.
      const stages = [...STAGES, CONTROL].map(([name]) => name);
      for (const stage of stages) {
        const values = data.runs.map((run) => run.evaluations.find((e) => e.stage === stage)!.accuracy);
        const [mean, std] = meanAndStd(values);
        const row = html.match(new RegExp(`<tr><th scope="row">${stage}</th>(.*?)</tr>`))?.[1];
        assert.ok(row, `no row for ${stage}`);
        const cells = [...row.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((m) => m[1]);
        assert.deepEqual(cells.slice(0, 4), [`${(100 * mean).toFixed(1)} ± ${(100 * std).toFixed(1)}`, '2', ...values.map((v) => (100 * v).toFixed(1))]);
        const evaluations = data.runs.map((run) => run.evaluations.find((e) => e.stage === stage)!);
        const entropies = evaluations.filter((e) => e.critical_count > 0).map((e) => e.critical_entropy);
        assert.equal(entropies.length, stage === 'grpo' ? 1 : 2);
        assert.deepEqual(cells.slice(4), [
          (100 * meanAndStd(evaluations.map((e) => e.format_rate))[0]).toFixed(1), meanAndStd(evaluations.map((e) => e.mean_length))[0].toFixed(1),
          (entropies.reduce((a, b) => a + b) / entropies.length).toFixed(3),
        ]);
      }
      assert.deepEqual(stageTable(data.runs).map((t) => t.stage), stages);

      // The correlation over the checkpoints that counted critical tokens.
      const points = data.runs.flatMap((run) => run.checkpoints).filter((c) => (c.critical_count as number) > 0);
      const r = pearson(points.map((c) => c.critical_entropy as number), points.map((c) => c.val_accuracy as number));
      assert.ok(html.includes(`r = ${r.toFixed(3).replace('-', '−')} (n = ${points.length})`), `correlation ${r} not on the page`);

      // Identity, notes, configuration; nothing external.
      for (const text of [data.command, data.device, data.build, data.startedAt, '1 h 02 min 05 s', ...data.notes!]) assert.ok(html.includes(text), `page lacks ${text}`);
      assert.match(html, /<details><summary>[^<]*<\/summary><pre>\{\n {2}&#34;seeds&#34;: \[\n {4}11,/);
      assert.doesNotMatch(html, /https?:|<script|<link|@import/);
    });

    it('escapes hostile strings, leaves out charts without data and takes a single seed', async () => {
      const next = rng('report.escape');
      const hostile = 'text<sft> & "x"';
      const rename = <T extends { stage?: unknown }>(r: T): T => (r.stage === 'text-sft' ? { ...r, stage: hostile } : r);
      const runs = reportData(next).runs.slice(0, 1).map((run) => ({
        ...run, steps: run.steps.filter((s) => s.kind === 'sft').map(rename), checkpoints: [], evaluations: run.evaluations.map(rename),
      }));
      const data = reportData(next, {
        title: '<script>alert("t")</script> & co', notes: ['<img src=x onerror=alert(1)>', "it's \"quoted\""],
        command: 'r1v demo --title "<b>x</b>"', runs, config: { evil: '</pre><script>' },
      });
      const dir = await tempDir();
      const out = await writeReport(path.join(dir, 'nested', 'run'), data);
      assert.deepEqual(out.images.map((f) => path.basename(f)), ['report-loss.png', 'report-stages.png']);
      const html = await fsp.readFile(out.html, 'utf8');
      assert.doesNotMatch(html, /<script|<img src=x|<b>x/);
      assert.ok(html.includes('<title>&#60;script&#62;alert(&#34;t&#34;)&#60;/script&#62; &#38; co</title>'));
      assert.ok(html.includes('<li>&#60;img src=x onerror=alert(1)&#62;</li>'));
      assert.ok(html.includes('<li>it&#39;s &#34;quoted&#34;</li>'));
      assert.ok(html.includes('r undefined (n = 0: fewer than 2 checkpoints)'));
      // One seed: the mean alone (no ±), n = 1, the seed's value.
      const first = runs[0]!.evaluations[0]!;
      const value = (100 * first.accuracy).toFixed(1);
      assert.ok(html.includes(`<tr><th scope="row">text&#60;sft&#62; &#38; &#34;x&#34;</th><td class="main">${value}</td><td>1</td><td>${value}</td>`));
      for (const image of out.images) assert.ok((await sharp(image).metadata()).width! > 100);
      assert.equal((html.match(/<img /g) ?? []).length, 2);
    });

    it('rejects bad data with a typed error before writing anything', async () => {
      const next = rng('report.errors');
      const dir = await tempDir();
      const data = reportData(next);
      const rejects = async (d: unknown, pattern: RegExp, target = dir) => {
        await assert.rejects(writeReport(target, d as ReportData), (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'ARGUMENT' && pattern.test(e.message));
      };
      await rejects({ ...data, title: 7 }, /writeReport: data\.title must be a string/);
      await rejects({ ...data, durationSeconds: -1 }, /data\.durationSeconds must be a finite number ≥ 0/);
      await rejects({ ...data, colour: 'red' }, /unknown field 'colour'/);
      await rejects({ ...data, notes: [3] }, /data\.notes\[0\] must be a string/);
      await rejects({ ...data, runs: [{ ...data.runs[0]!, steps: [{ step: 1, stage: 'a', loss: true }] }] }, /runs\[0\]\.steps\[0\]\.loss must be a number or a string/);
      await rejects(data, /dir must not be empty/, '');
      assert.deepEqual(await fsp.readdir(dir), []);
      const file = path.join(dir, 'file');
      await fsp.writeFile(file, 'x');
      await assert.rejects(writeReport(path.join(file, 'sub'), data), (e: unknown) => (e as { code?: string }).code === 'IO' && /writeReport: creating/.test((e as Error).message));
    });
  });
});
