// Progress of long work (training stages, evaluation, the demo's pipeline) for people: a bar
// with an ETA (cli-progress) when the stream is a terminal, else one plain line per update at
// most every few seconds and at the end — logs stay readable in CI and files.
import cliProgress from 'cli-progress';

/** Where progress goes. */
export interface Progress {
  /** Starts a task of `total` units under a label (ends any running one). */
  begin(label: string, total: number): void;
  /** `units` more done; `values` are shown beside the bar (e.g. { reward: 0.42 }). */
  advance(units?: number, values?: Record<string, number | string>): void;
  /** Ends the current task. */
  end(): void;
  /** A line of text that does not disturb the bar. */
  log(line: string): void;
}

function formatValues(values: Record<string, number | string>): string {
  return Object.entries(values).map(([k, v]) => `${k} ${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toFixed(3)) : v}`).join(', ');
}

/** Progress on a stream (default stderr): a bar on a terminal, plain lines otherwise. */
export function createProgress(stream: NodeJS.WriteStream = process.stderr, options: { plainEveryMs?: number } = {}): Progress {
  const tty = stream.isTTY === true;
  const every = options.plainEveryMs ?? 5000;
  let bar: cliProgress.SingleBar | undefined;
  let label = '', total = 0, done = 0, started = 0, lastLine = 0, lineDone = -1, shown: Record<string, number | string> = {};
  const plain = (final: boolean) => {
    const now = performance.now();
    if (final ? lineDone === done : now - lastLine < every) return;
    lastLine = now;
    lineDone = done;
    const elapsed = (now - started) / 1000;
    const eta = done > 0 && done < total ? ` eta ${Math.round((elapsed / done) * (total - done))}s` : '';
    stream.write(`${label}: ${done}/${total} (${elapsed.toFixed(0)}s${eta})${Object.keys(shown).length ? ` ${formatValues(shown)}` : ''}\n`);
  };
  const end = () => {
    if (!label) return;
    if (bar) bar.stop();
    else plain(true);
    bar = undefined;
    label = '';
  };
  return {
    begin(l, t) {
      end();
      label = l;
      total = t;
      done = 0;
      shown = {};
      started = performance.now();
      lastLine = 0;
      lineDone = -1;
      if (tty) {
        bar = new cliProgress.SingleBar({
          format: `${l} [{bar}] {value}/{total} | {duration_formatted} elapsed, eta {eta_formatted} | {values}`,
          stream, hideCursor: true, clearOnComplete: false, etaBuffer: 20,
        }, cliProgress.Presets.shades_classic);
        bar.start(t, 0, { values: '' });
      }
    },
    advance(units = 1, values) {
      done = Math.min(total, done + units);
      if (values) shown = values;
      if (bar) bar.update(done, { values: formatValues(shown) });
      else if (label) plain(done === total);
    },
    end,
    log(line) {
      if (bar) {
        // cli-progress redraws the bar after the line.
        stream.write(`\r\x1b[K${line}\n`);
        bar.render();
      } else {
        stream.write(`${line}\n`);
      }
    },
  };
}

/** Progress that goes nowhere. */
export const noProgress: Progress = { begin() {}, advance() {}, end() {}, log() {} };
