// `r1v devices`: the devices r1v can use and how the addon was built, as JSON.
import type { Command } from 'commander';

import { buildInfo, devices } from '../../core/device.js';

export function register(program: Command): void {
  program
    .command('devices')
    .description('list the devices r1v can use and how it was built (JSON)')
    .action(() => {
      console.log(JSON.stringify({ devices: devices(), build: buildInfo() }, null, 2));
    });
}
