// Ctrl-C for long commands (train, demo): the first SIGINT aborts a signal, so the work stops
// cleanly (the trainer finishes or drops its step and writes a final checkpoint); a second one
// exits at once with 130. Under mpirun, which ends the job on Ctrl-C, SIGUSR1 (which mpirun
// forwards to every rank) is the clean stop: `signals` lists the ones to handle.
import type { Progress } from '../train/progress.js';
import { EXIT } from './failures.js';

/** First SIGINT: abort (clean stop) and say `message`; second: exit now. */
export function interruptOnSigint(progress: Progress, message = 'r1v: stopping after the current step and writing a checkpoint (Ctrl-C again to quit at once)',
  signals: readonly NodeJS.Signals[] = ['SIGINT']): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) {
      progress.end();
      process.exit(EXIT.interrupted);
    }
    progress.log(message);
    controller.abort();
  };
  for (const s of signals) process.on(s, onSigint);
  return { signal: controller.signal, dispose: () => signals.forEach((s) => process.off(s, onSigint)) };
}

