// `r1v train <config>` starts a run; `r1v train --resume <runDir>` continues one from its latest
// checkpoint (with the run's own config.json). Progress goes to stderr: on a terminal a bar per
// stage with its ETA and reward / accuracy / entropy (loss for SFT) plus a line per checkpoint
// and event; elsewhere (logs, CI) a line per step as well. The summary (run directory, latest
// and best checkpoint) goes to stdout.
//
// Ctrl-C: the first SIGINT aborts the trainer's signal, so it finishes or drops the current step
// and writes a final checkpoint; the command then exits with 130. A second Ctrl-C exits at once
// (130); the checkpoint protocol never leaves a partial checkpoint under a step name.
//
// --distributed: this process is one rank of an mpirun job (docs/distributed.md). Rank 0 shows
// the progress and the summary; SIGUSR1 (forwarded by mpirun to every rank) stops cleanly; a
// failure on any rank ends the whole job (MPI_Abort) rather than leaving the others waiting.
import path from 'node:path';

import type { Command } from 'commander';

import { Engine } from '../../core/engine.js';
import { Communicator } from '../../ops/collectives.js';
import { loadTrainConfig, type TrainConfig } from '../../train/config.js';
import type { StepMetrics } from '../../train/metrics.js';
import { rankDevice } from '../../train/data-parallel.js';
import { createProgress, noProgress } from '../../train/progress.js';
import type { Trainer, TrainSummary } from '../../train/trainer.js';
import { EXIT, exitCodeOf, InputError, loadingInput, oneLine } from '../failures.js';
import { interruptOnSigint } from '../interrupt.js';
import { deviceOption } from '../options.js';

interface TrainOptions {
  resume?: string;
  device?: string;
  out?: string;
  distributed?: boolean;
  shardOptimizer?: boolean;
  overlapGradients?: boolean;
}

export function register(program: Command): void {
  program
    .command('train')
    .description('train a model: run the stages of a training config, or continue a run')
    .argument('[config]', 'training config file, YAML or JSON; omit it with --resume')
    .option('--resume <runDir>', "continue the run in runDir from its latest checkpoint, with the run's own config.json")
    .addOption(deviceOption("device (default: the config's)"))
    .option('--out <runDir>', 'run directory of a new run (overrides run.dir of the config)')
    .option('--distributed', 'run as one rank of an mpirun job: mpirun -np N r1v train <config> --distributed (docs/distributed.md)')
    .option('--shard-optimizer', 'with --distributed: each rank keeps 1/N of the optimizer state (ZeRO-1)')
    .option('--overlap-gradients', 'with --distributed: sum the gradients during backward (default: on CUDA only)')
    .option('--no-overlap-gradients', 'with --distributed: sum the gradients after backward')
    .addHelpText('after', [
      '',
      'Examples:',
      '  r1v train grpo.yaml                 start a run in the config\'s run.dir',
      '  r1v train grpo.yaml --out runs/a    start it in runs/a',
      '  r1v train --resume runs/a           continue runs/a from its latest checkpoint',
      '  mpirun -np 4 r1v train grpo.yaml --distributed   4 data-parallel ranks (r1v launch builds the command)',
      '',
      'Ctrl-C stops after the current step and writes a final checkpoint (exit code 130);',
      'a second Ctrl-C quits at once.',
    ].join('\n'))
    .action((config: string | undefined, o: TrainOptions) => train(config, o));
}

/** The trainer module, loaded on use: the rewards behind it take seconds to import (mathjs). */
const trainerModule = () => import('../../train/trainer.js');

interface RunOptions {
  signal: AbortSignal; log: (line: string) => void; logSteps: boolean; communicator?: Communicator;
  dataParallel?: { shardOptimizer?: boolean; overlap?: boolean };
}

async function openTrainer(configFile: string | undefined, o: TrainOptions, run: RunOptions): Promise<{ trainer: Trainer; engine?: Engine }> {
  if (configFile !== undefined && o.resume !== undefined) throw new InputError(`give a training config or --resume <runDir>, not both (${configFile}, --resume ${o.resume})`);
  if (configFile === undefined && o.resume === undefined) throw new InputError('give a training config (r1v train <config>) or --resume <runDir>');
  if (o.resume !== undefined && o.out !== undefined) throw new InputError('--out names the directory of a new run; a resumed run stays in its own');
  if (configFile !== undefined) {
    const config: TrainConfig = await loadTrainConfig(configFile);
    if (o.out !== undefined) config.run.dir = path.resolve(o.out);
    if (o.device !== undefined) config.device = o.device;
    const { Trainer } = await trainerModule();
    return { trainer: await Trainer.create({ config, ...run }) };
  }
  const runDir = o.resume!;
  const { Trainer } = await trainerModule();
  if (o.device === undefined) return { trainer: await Trainer.resume(runDir, run) };
  // The recorded config must stay as it is (resume checks its hash): the device comes as an engine.
  const { seed } = await loadTrainConfig(path.join(runDir, 'config.json'));
  const engine = Engine.create({ device: rankDevice(o.device, run.communicator) as 'auto', seed });
  try {
    return { trainer: await Trainer.resume(runDir, { ...run, engine }), engine };
  } catch (error) {
    engine.dispose();
    throw error;
  }
}

function stageLabel(trainer: Trainer, index: number, done: number): { label: string; remaining: number } {
  const s = trainer.config.stages[index]!;
  const from = done > 0 ? ` from step ${done + 1}` : '';
  return { label: `stage ${index + 1}/${trainer.config.stages.length} ${s.name} (${s.kind}${from})`, remaining: s.steps - done };
}

function barValues(m: StepMetrics): Record<string, number> {
  const keys = m.kind === 'sft' ? { loss: 'loss' } : { reward: 'reward_mean', accuracy: 'accuracy', entropy: 'entropy' };
  return Object.fromEntries(Object.entries(keys).flatMap(([label, key]) => (typeof m[key] === 'number' ? [[label, m[key] as number]] : [])));
}

function printSummary(trainer: Trainer, summary: TrainSummary): void {
  const latest = summary.checkpoints[summary.checkpoints.length - 1];
  const selectBy = trainer.config.checkpoint.selectBy;
  console.log(`run directory: ${summary.runDir}`);
  console.log(`latest checkpoint: ${latest ? `${latest.dir} (step ${latest.step})` : 'none'}`);
  console.log(`best checkpoint: ${summary.best ? `${summary.best.dir} (${selectBy} ${summary.best.metrics[selectBy]!.toFixed(4)})` : `none (no checkpoint has ${selectBy})`}`);
}

function dataParallelOptions(o: TrainOptions): { shardOptimizer?: boolean; overlap?: boolean } {
  if (!o.distributed && (o.shardOptimizer || o.overlapGradients !== undefined)) throw new InputError('--shard-optimizer and --(no-)overlap-gradients go with --distributed');
  return { ...(o.shardOptimizer ? { shardOptimizer: true } : {}), ...(o.overlapGradients !== undefined ? { overlap: o.overlapGradients } : {}) };
}

async function train(configFile: string | undefined, o: TrainOptions): Promise<void> {
  dataParallelOptions(o);
  const communicator = o.distributed ? Communicator.world() : undefined;
  const isMain = (communicator?.rank ?? 0) === 0;
  // the other ranks print only their own events (prefixed with their rank by the trainer)
  const progress = isMain ? createProgress(process.stderr) : { ...noProgress, log: (line: string) => console.error(line) };
  const interrupt = interruptOnSigint(progress, undefined, communicator && communicator.worldSize > 1 ? ['SIGINT', 'SIGUSR1'] : ['SIGINT']);
  try {
    const { trainer, engine } = await loadingInput(() => openTrainer(configFile, o, {
      signal: interrupt.signal, log: (line) => progress.log(line), logSteps: process.stderr.isTTY !== true,
      ...(communicator ? { communicator, dataParallel: dataParallelOptions(o) } : {}),
    }));
    try {
      let stage = trainer.state.stage;
      const begin = (index: number, done: number): void => {
        if (index >= trainer.config.stages.length) return progress.end();
        const { label, remaining } = stageLabel(trainer, index, done);
        if (remaining === 0) return begin(++stage, 0);
        progress.begin(label, remaining);
      };
      begin(stage, trainer.state.stageStep);
      const summary = await trainer.train({
        onStep: (m) => {
          progress.advance(1, barValues(m));
          if (m.stageStep === trainer.config.stages[stage]!.steps) begin(++stage, 0);
        },
      });
      progress.end();
      if (isMain) printSummary(trainer, summary);
      if (summary.stopped && trainer.state.stage < trainer.config.stages.length) {
        if (isMain) console.error(`r1v: stopped at step ${summary.steps}; continue with: r1v train --resume ${summary.runDir}`);
        process.exitCode = EXIT.interrupted;
      }
    } finally {
      trainer.dispose();
      engine?.dispose();
    }
  } catch (error) {
    // one rank failing would leave the others waiting in a collective until their timeout
    if (communicator && communicator.worldSize > 1) communicator.abort(`r1v train: ${oneLine((error as Error)?.message ?? String(error))}`, exitCodeOf(error));
    throw error;
  } finally {
    progress.end();
    interrupt.dispose();
  }
}
