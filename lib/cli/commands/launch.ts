// `r1v launch -n N <config>`: the mpirun command line that runs `r1v train <config>
// --distributed` on N ranks (docs/distributed.md), printed, or with --run executed (its exit
// code is the command's). A thin wrapper over Open MPI's own launcher: r1v has no rendezvous of
// its own, and the printed line is what to adapt for a cluster's scheduler.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

import type { Command } from 'commander';

import { InputError } from '../failures.js';

interface LaunchOptions {
  ranks: string;
  hostfile?: string;
  resume?: string;
  device?: string;
  out?: string;
  mpirunArgs?: string;
  shardOptimizer?: boolean;
  run?: boolean;
}

export function register(program: Command): void {
  program
    .command('launch')
    .description('print (or --run) the mpirun command that trains a config on N data-parallel ranks')
    .argument('[config]', 'training config file; omit it with --resume')
    .requiredOption('-n, --ranks <n>', 'number of ranks (processes; one per GPU with --device cuda)')
    .option('--hostfile <file>', "Open MPI hostfile: the nodes and their slots (several nodes)")
    .option('--resume <runDir>', 'continue the run in runDir')
    .option('--device <device>', "every rank's device: cpu, or cuda (each rank takes the GPU of its local rank)")
    .option('--out <runDir>', 'run directory of a new run (overrides run.dir of the config)')
    .option('--mpirun-args <args>', "more arguments for mpirun, e.g. '-x NCCL_SOCKET_IFNAME=eth0'")
    .option('--shard-optimizer', "each rank keeps 1/N of the optimizer state (ZeRO-1; r1v train's --shard-optimizer)")
    .option('--run', 'run the command instead of printing it')
    .addHelpText('after', [
      '',
      'Examples:',
      '  r1v launch -n 4 grpo.yaml                       print the command for 4 ranks on this node',
      '  r1v launch -n 16 --hostfile hosts --device cuda grpo.yaml --run',
    ].join('\n'))
    .action((config: string | undefined, o: LaunchOptions) => launch(config, o));
}

/** The mpirun command line (argv) for the options. */
export function launchCommand(config: string | undefined, o: LaunchOptions): string[] {
  const n = Number(o.ranks);
  if (!Number.isInteger(n) || n < 1) throw new InputError(`--ranks must be an integer ≥ 1, got '${o.ranks}'`);
  if ((config === undefined) === (o.resume === undefined)) throw new InputError('give a training config or --resume <runDir> (one of them)');
  // the same r1v entry point as this command's, started the same way
  const cli = path.resolve(process.argv[1]!);
  const mpirun = ['mpirun', '-np', String(n)];
  if (o.hostfile !== undefined) mpirun.push('--hostfile', o.hostfile);
  if (process.getuid?.() === 0) mpirun.push('--allow-run-as-root');
  if (o.mpirunArgs !== undefined) mpirun.push(...o.mpirunArgs.split(/\s+/).filter(Boolean));
  const train = [process.execPath, ...process.execArgv, cli, 'train', ...(config !== undefined ? [config] : ['--resume', o.resume!]), '--distributed'];
  if (o.device !== undefined) train.push('--device', o.device);
  if (o.out !== undefined) train.push('--out', o.out);
  if (o.shardOptimizer) train.push('--shard-optimizer');
  return [...mpirun, ...train];
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

async function launch(config: string | undefined, o: LaunchOptions): Promise<void> {
  const argv = launchCommand(config, o);
  if (!o.run) {
    console.log(argv.map(quote).join(' '));
    return;
  }
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new InputError('mpirun was not found: install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), then rebuild r1v');
  }
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit' });
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, signal) => resolve(c ?? (signal ? 128 + 15 : 1)));
  });
  process.exitCode = code;
}
