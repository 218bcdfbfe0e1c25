// The demo's data as files, so each stage of examples/mnist-arith/ runs with `r1v train` on its
// own: the tokenizer, one JSONL file per stage (rows `{ question, answer, image?, response? }`)
// and the images as PNG files beside them — what `r1v demo --write-data DIR` writes.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import type { DatasetRow } from '../../data/dataset.js';
import type { RawImage } from '../../data/image.js';
import { demoTokenizer } from './configs.js';
import { stageRows, testRows, type DemoPreset } from './pipeline.js';

/** The file each stage reads (relative to the data directory), and the held-out rows. */
const FILES = {
  '1-text.jsonl': '1-text', '2-align.jsonl': '2-align', '3-coldstart.jsonl': '3-coldstart', '4-grpo.jsonl': '4-grpo',
} as const;

async function writeRows(dir: string, name: string, rows: readonly DatasetRow[]): Promise<void> {
  const images = path.join(dir, 'images', path.basename(name, '.jsonl'));
  await fsp.mkdir(images, { recursive: true });
  const lines: string[] = [];
  for (const [i, row] of rows.entries()) {
    const { images: pictures, ...rest } = row;
    const files: string[] = [];
    for (const [k, picture] of (pictures ?? []).entries()) {
      const raw = picture as RawImage;
      const file = path.join('images', path.basename(name, '.jsonl'), `${i}-${k}.png`);
      await sharp(Buffer.from(raw.data), { raw: { width: raw.width, height: raw.height, channels: raw.channels } }).png().toFile(path.join(dir, file));
      files.push(file);
    }
    lines.push(JSON.stringify({ ...rest, ...(files.length ? { images: files } : {}) }));
  }
  await fsp.writeFile(path.join(dir, name), `${lines.join('\n')}\n`);
}

/** Writes the tokenizer, every stage's rows and the held-out rows into dir. */
export async function writeDemoData(dir: string, preset: DemoPreset, seed: number): Promise<string[]> {
  await demoTokenizer(path.join(dir, 'tokenizer'));
  const written = ['tokenizer/'];
  for (const [file, stage] of Object.entries(FILES)) {
    await writeRows(dir, file, stageRows(stage, preset, seed));
    written.push(file);
  }
  await writeRows(dir, 'test.jsonl', testRows(preset, seed));
  return [...written, 'test.jsonl'];
}
