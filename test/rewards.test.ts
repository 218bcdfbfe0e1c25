// Rewards: answer extraction, the format reward, weighted scoring with the failure policy
// (throwing, NaN, hanging and slow user rewards), reward-spec validation, and a fuzz of every
// text function with random strings.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import {
  accuracyReward, answersEquivalent, extractAnswer, formatReward, formatScore, r1v3Rewards, scoreSamples,
  type Reward, type RewardSample,
} from '../lib/rewards/index.js';
import { expectR1VError, expectR1VRejection, rng } from './helpers.js';

function sample(text: string, answer: unknown = '0', step = 0): RewardSample {
  return { text, row: { answer }, step };
}

const never = new Promise<number>(() => {});
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('rewards: answer extraction', () => {
  const cases: readonly [string, string | null][] = [
    ['<think>so \\boxed{3}</think> The answer is \\boxed{\\frac{1}{2}}.', '\\frac{1}{2}'],
    ['<think>\\boxed{3}</think> no answer here', null],
    ['<think>abc \\boxed{3}', null],
    ['<think>x</think> \\boxed{1} then \\boxed{2}', '2'],
    ['\\boxed{\\boxed{5}}', '5'],
    ['\\boxed{a{b{c}}d}', 'a{b{c}}d'],
    ['\\boxed{\\{1,2\\}}', '\\{1,2\\}'],
    ['$\\boxed 5$', '5'],
    ['\\fbox{7}', '7'],
    ['\\boxed{}', ''],
    ['\\boxed{5', null],
    ['\\boxed{3} and \\boxed{4', null],
    ['x\\boxedx{5}', null],
    ['Answer: 12', '12'],
    ['**Final Answer:** $\\frac{3}{4}$', '$\\frac{3}{4}$'],
    ['the answer is 5. Then the answer is: 6.', '6'],
    ['The final answer is\n  42\n', '42'],
    ['reasoning </think> \\boxed{9}<|im_end|>', '9'],
    ['</think> Answer: (B)<|endoftext|><|im_end|>\n', '(B)'],
    ['nothing at all', null],
  ];

  it('finds the last box after the think block, else the last answer line', () => {
    for (const [text, expected] of cases) assert.equal(extractAnswer(text), expected, JSON.stringify(text));
  });

  it('searches the whole response with searchAfterThink: false', () => {
    assert.equal(extractAnswer('<think>\\boxed{3}</think>', { searchAfterThink: false }), '3');
    assert.equal(extractAnswer('<think>\\boxed{3}</think>'), null);
  });

  it('finds no answer in a cut-off response when the prompt opened the think block', () => {
    const cutOff = 'so far \\boxed{3}, and then';
    assert.equal(extractAnswer(cutOff), '3');
    assert.equal(extractAnswer(cutOff, { thinkInPrompt: true }), null);
    assert.equal(extractAnswer('r \\boxed{2}</think> \\boxed{3}', { thinkInPrompt: true }), '3');
  });

  it('rejects bad arguments', () => {
    expectR1VError(() => extractAnswer(3 as unknown as string), 'ARGUMENT', /extractAnswer: text must be a string/);
    expectR1VError(() => extractAnswer('x', { endMarkers: ['ok', ''] }), 'ARGUMENT', /endMarkers\[1\]/);
    expectR1VError(() => extractAnswer('x', { afterThink: true } as never), 'ARGUMENT', /unknown option 'afterThink'/);
  });
});

describe('rewards: format', () => {
  const cases: readonly [string, Parameters<typeof formatScore>[1], 0 | 1][] = [
    ['<think>reasoning</think>answer', {}, 1],
    ['  <think>r</think> answer', {}, 1],
    ['<think></think>a', {}, 1],
    ['<think>r</think>a<|im_end|>', {}, 1],
    ['<think>r</think>a<|endoftext|>\n<|im_end|>\n', {}, 1],
    ['<think>r</think>  ', {}, 0],
    ['<think>r</think><|im_end|>', {}, 0],
    ['x<think>r</think>a', {}, 0],
    ['<think>r</think>a</think>', {}, 0],
    ['<think><think>r</think>a', {}, 0],
    ['<think>r</think>a<think>s</think>b', {}, 0],
    ['<think>r</think a', {}, 0],
    ['just an answer', {}, 0],
    ['r</think>a', {}, 0],
    ['r</think>a', { thinkInPrompt: true }, 1],
    ['<think>r</think>a', { thinkInPrompt: true }, 0],
    ['r</think>  <|im_end|>', { thinkInPrompt: true }, 0],
    ['<think>r</think>so \\boxed{5}.', { requireBoxed: true }, 1],
    ['<think>r</think>5', { requireBoxed: true }, 0],
    ['<think>r</think>\\boxed{ }', { requireBoxed: true }, 0],
    ['<think>r \\boxed{5}</think>5', { requireBoxed: true }, 0],
    ['<think>r</think>a[END]', { endMarkers: ['[END]'] }, 1],
    ['<think>r</think>[END]', { endMarkers: ['[END]'] }, 0],
    ['<think>r</think><|im_end|>', { endMarkers: ['[END]'] }, 1],
  ];

  it('scores the table of shapes', () => {
    for (const [text, options, expected] of cases) {
      assert.equal(formatScore(text, options), expected, `${JSON.stringify(text)} ${JSON.stringify(options)}`);
      assert.equal(formatReward(options).fn(sample(text)), expected);
    }
  });

  it('checks its options', () => {
    expectR1VError(() => formatReward({ thinkInPrompt: 'yes' } as never), 'ARGUMENT', /formatReward: thinkInPrompt must be a boolean/);
    expectR1VError(() => formatReward({ weight: Infinity }), 'ARGUMENT', /formatReward: weight/);
    expectR1VError(() => formatReward({ name: '' }), 'ARGUMENT', /formatReward: name/);
    expectR1VError(() => formatReward().fn({ row: { answer: 1 }, step: 0 } as unknown as RewardSample), 'ARGUMENT', /sample\.text/);
  });
});

describe('rewards: scoring', () => {
  it('weights R1V3 accuracy 0.8 and format 0.2', async () => {
    const samples = [
      sample('<think>r</think> \\boxed{4}', '4'),
      sample('<think>r</think> \\boxed{5}', '4'),
      sample('\\boxed{4}', '4'),
      sample('no answer', '4'),
    ];
    const { scores, failures } = await scoreSamples(samples, r1v3Rewards());
    assert.deepEqual(scores.map((s) => s.components), [
      { accuracy: 1, format: 1 }, { accuracy: 0, format: 1 }, { accuracy: 1, format: 0 }, { accuracy: 0, format: 0 },
    ]);
    const expected = [1, 0.2, 0.8, 0];
    scores.forEach((s, i) => assert.ok(Math.abs(s.total - expected[i]!) < 1e-15, `${s.total} vs ${expected[i]}`));
    assert.deepEqual(failures, { accuracy: { thrown: 0, invalid: 0, timedOut: 0 }, format: { thrown: 0, invalid: 0, timedOut: 0 } });
    const custom = r1v3Rewards({ format: { weight: 0.5 } });
    assert.deepEqual(custom.map((r) => [r.name, r.weight]), [['accuracy', 0.8], ['format', 0.5]]);
    const opened = await scoreSamples([sample('r </think> \\boxed{4}', '4'), sample('r \\boxed{4}', '4')], r1v3Rewards({ thinkInPrompt: true }));
    assert.deepEqual(opened.scores.map((s) => s.total), [1, 0]);
  });

  it('sums random weights times random component values', async () => {
    const next = rng('rewards weights');
    const n = 40;
    const table = Array.from({ length: 3 }, () => Array.from({ length: n }, () => next() * 4 - 2));
    const weights = table.map(() => next() * 6 - 3);
    const rewards: Reward[] = table.map((values, r) => ({
      name: `r${r}`,
      weight: weights[r]!,
      fn: r === 1 ? async (s) => { await sleep(1); return values[s.step]!; } : (s) => values[s.step]!,
    }));
    const samples = Array.from({ length: n }, (_, i) => sample(`response ${i}`, '0', i));
    const { scores } = await scoreSamples(samples, rewards, { concurrency: 5 });
    scores.forEach((score, i) => {
      let total = 0;
      table.forEach((values, r) => {
        assert.equal(score.components[`r${r}`], values[i]);
        total += weights[r]! * values[i]!;
      });
      assert.ok(Math.abs(score.total - total) <= 1e-12 * (1 + Math.abs(total)), `sample ${i}: ${score.total} vs ${total}`);
    });
  });

  it('scores failing calls 0, counts them, reports them and goes on', async () => {
    const n = 6;
    const errors: [string, number, unknown][] = [];
    const rewards: Reward[] = [
      { name: 'ok', weight: 1, fn: (s) => s.step + 1 },
      { name: 'throws', weight: 2, fn: (s) => { if (s.step % 2 === 0) throw new Error(`bad ${s.step}`); return 1; } },
      { name: 'rejects', weight: 1, fn: async () => { throw new TypeError('async bad'); } },
      { name: 'nan', weight: 1, fn: (s) => (s.step === 1 ? Number.NaN : 1) },
      { name: 'string', weight: 1, fn: () => '1' as unknown as number },
      { name: 'hangs', weight: 1, fn: (s) => (s.step < 2 ? never : 3) },
      { name: 'slow', weight: 1, fn: async () => { await sleep(30); return 0.5; } },
    ];
    const samples = Array.from({ length: n }, (_, i) => sample(`s${i}`, '1', i));
    const started = performance.now();
    const { scores, failures } = await scoreSamples(samples, rewards, {
      timeoutMs: 300, concurrency: 4, onError: (name, index, error) => errors.push([name, index, error]),
    });
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 3000, `scoring took ${elapsed.toFixed(0)} ms`);
    assert.deepEqual(failures, {
      ok: { thrown: 0, invalid: 0, timedOut: 0 },
      throws: { thrown: 3, invalid: 0, timedOut: 0 },
      rejects: { thrown: 6, invalid: 0, timedOut: 0 },
      nan: { thrown: 0, invalid: 1, timedOut: 0 },
      string: { thrown: 0, invalid: 6, timedOut: 0 },
      hangs: { thrown: 0, invalid: 0, timedOut: 2 },
      slow: { thrown: 0, invalid: 0, timedOut: 0 },
    });
    scores.forEach((score, i) => {
      const expected = {
        ok: i + 1, throws: i % 2 === 0 ? 0 : 1, rejects: 0, nan: i === 1 ? 0 : 1, string: 0, hangs: i < 2 ? 0 : 3, slow: 0.5,
      };
      assert.deepEqual(score.components, expected, `sample ${i}`);
      const total = (i + 1) + 2 * expected.throws + expected.nan + expected.hangs + 0.5;
      assert.ok(Math.abs(score.total - total) < 1e-12, `sample ${i}: ${score.total} vs ${total}`);
    });
    assert.equal(errors.length, 3 + 6 + 1 + 6 + 2);
    const byName = (name: string) => errors.filter(([n]) => n === name);
    assert.deepEqual(byName('throws').map(([, i]) => i).sort(), [0, 2, 4]);
    assert.ok(byName('throws').every(([, i, e]) => e instanceof Error && e.message === `bad ${i}`));
    assert.ok(byName('rejects').every(([, , e]) => e instanceof TypeError));
    assert.match(String((byName('nan')[0]![2] as Error).message), /reward 'nan' returned NaN for samples\[1\]/);
    assert.ok(byName('hangs').every(([, , e]) => e instanceof DOMException && e.name === 'TimeoutError'));
  });

  it('times out a synchronous reward that returns after the limit', async () => {
    const busy = (ms: number) => { const end = performance.now() + ms; while (performance.now() < end); return 1; };
    const { scores, failures } = await scoreSamples([sample('a'), sample('b')], [
      { name: 'busy', weight: 1, fn: (s) => busy(s.text === 'a' ? 250 : 0) },
    ], { timeoutMs: 100 });
    assert.deepEqual(scores.map((s) => s.total), [0, 1]);
    assert.deepEqual(failures.busy, { thrown: 0, invalid: 0, timedOut: 1 });
  });

  it('keeps at most `concurrency` calls in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    const fn = async () => {
      peak = Math.max(peak, ++inFlight);
      await sleep(2);
      inFlight--;
      return 1;
    };
    const samples = Array.from({ length: 30 }, (_, i) => sample(`s${i}`));
    const { scores } = await scoreSamples(samples, [{ name: 'a', weight: 1, fn }, { name: 'b', weight: 1, fn }], { concurrency: 3 });
    assert.equal(peak, 3);
    assert.ok(scores.every((s) => s.total === 2));
  });

  it('lets the process exit once scoring is done (no timer left behind)', () => {
    // A hanging reward is abandoned at its 200 ms timeout; then a fast reward's 120 s timer must
    // be cleared, or the child would outlive the 60 s limit below.
    const code = `
      import { scoreSamples } from './lib/rewards/index.ts';
      const samples = [{ text: 'a', row: { answer: '1' }, step: 0 }];
      const fast = { name: 'fast', weight: 1, fn: async () => 1 };
      const first = await scoreSamples(samples, [fast, { name: 'hangs', weight: 1, fn: () => new Promise(() => {}) }], { timeoutMs: 200 });
      const second = await scoreSamples(samples, [fast], { timeoutMs: 120000 });
      console.log(JSON.stringify([first.scores[0].total, first.failures.hangs.timedOut, second.scores[0].total]));
    `;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.signal, null, 'the child was still alive after 60 s');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout.trim()), [1, 1, 1]);
  });

  it('rejects bad reward specs, samples and options, naming the index and key', async () => {
    const fn = () => 1;
    const cases: [unknown, RegExp][] = [
      [[], /rewards must be a non-empty array/],
      ['x', /rewards must be a non-empty array/],
      [[{ name: 'a', weight: 1, fn }, null], /rewards\[1\] must be an object/],
      [[{ weight: 1, fn }], /rewards\[0\]\.name must be a non-empty string, got undefined/],
      [[{ name: '', weight: 1, fn }], /rewards\[0\]\.name must be a non-empty string/],
      [[{ name: 'a', weight: 1, fn }, { name: 'b', weight: 1, fn }, { name: 'a', weight: 1, fn }], /rewards\[2\]\.name 'a' is already the name of rewards\[0\]/],
      [[{ name: 'a', weight: Number.NaN, fn }], /rewards\[0\]\.weight must be a finite number, got NaN/],
      [[{ name: 'a', weight: Infinity, fn }], /rewards\[0\]\.weight/],
      [[{ name: 'a', weight: '1', fn }], /rewards\[0\]\.weight/],
      [[{ name: 'a', weight: 1, fn: 'x' }], /rewards\[0\]\.fn must be a function/],
      [[{ name: 'a', weight: 1, fn, wieght: 2 }], /rewards\[0\]: unknown option 'wieght'/],
    ];
    for (const [rewards, pattern] of cases) {
      await expectR1VRejection(scoreSamples([sample('a')], rewards as Reward[]), 'ARGUMENT', pattern);
    }
    const ok: Reward[] = [{ name: 'a', weight: 1, fn }];
    await expectR1VRejection(scoreSamples('x' as never, ok), 'ARGUMENT', /samples must be an array/);
    await expectR1VRejection(scoreSamples([sample('a'), { row: {} } as never], ok), 'ARGUMENT', /samples\[1\] must be an object with a string text/);
    await expectR1VRejection(scoreSamples([sample('a')], ok, { timeoutMs: 0 }), 'ARGUMENT', /timeoutMs/);
    await expectR1VRejection(scoreSamples([sample('a')], ok, { concurrency: 1.5 }), 'ARGUMENT', /concurrency must be an integer/);
    await expectR1VRejection(scoreSamples([sample('a')], ok, { onError: 1 } as never), 'ARGUMENT', /onError must be a function/);
    await expectR1VRejection(scoreSamples([sample('a')], ok, { retries: 1 } as never), 'ARGUMENT', /unknown option 'retries'/);
    const empty = await scoreSamples([], ok);
    assert.deepEqual(empty, { scores: [], failures: { a: { thrown: 0, invalid: 0, timedOut: 0 } } });
  });
});

describe('rewards: fuzz', () => {
  // Pieces that steer random strings into the parsers' corners.
  const PIECES = [
    '\\boxed{', '\\fbox', '}', '{', '\\frac', '\\dfrac', '\\sqrt', '[', ']', '(', ')', '\\left', '\\right', '\\text{', '$', '\\$',
    '%', '\\%', ',', '.', '^', '_', '\\circ', '\\times', '\\cdot', '\\div', '\\pi', '<think>', '</think>', '<|im_end|>', 'Answer:',
    'the answer is', '=', '-', '−', '+', '*', '/', 'e', 'E', '1e309', '0', '7', '1,000', ' ', '\n', '\\', 'A', '(B)', 'Option',
    'cm', 'sqrt', 'nthRoot', 'x', '∞', '√', '°', '\\{', '\\}', '\u0000', '\ud800', '😀', '9'.repeat(40), '^^', '!', ';', '"', "'",
  ];

  it('never throws on random strings, and answers with the right types', () => {
    const next = rng('rewards fuzz');
    const accuracy = accuracyReward();
    const format = formatReward({ requireBoxed: true });
    const started = performance.now();
    for (let trial = 0; trial < 3000; trial++) {
      let text = '';
      const pieces = Math.floor(next() * 30);
      for (let k = 0; k < pieces; k++) {
        text += next() < 0.7 ? PIECES[Math.floor(next() * PIECES.length)] : String.fromCharCode(Math.floor(next() * 0x3000));
      }
      const truth = trial % 3 === 0 ? text.slice(0, Math.floor(next() * text.length)) : PIECES[trial % PIECES.length]!;
      const answer = extractAnswer(text);
      assert.ok(answer === null || typeof answer === 'string');
      assert.equal(typeof answersEquivalent(text, truth), 'boolean');
      assert.equal(typeof answersEquivalent(truth, text), 'boolean');
      assert.equal(answersEquivalent(text, text), answersEquivalent(text, text));
      assert.ok([0, 1].includes(formatScore(text)));
      assert.ok([0, 1].includes(format.fn(sample(text)) as number));
      assert.ok([0, 1].includes(accuracy.fn(sample(text, truth)) as number));
    }
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 60_000, `fuzz took ${elapsed.toFixed(0)} ms`);
  });

  it('stays fast on long and adversarial strings', () => {
    const inputs = [
      ' '.repeat(100_000) + 'x', `answer: ${' '.repeat(100_000)}5`, '\\boxed{'.repeat(20_000), 'a'.repeat(200_000),
      '2^1024*'.repeat(140) + '2', '(2^1024+1)/(3^600+1)*'.repeat(45) + '1', '('.repeat(500) + '1' + ')'.repeat(500),
      '\\frac{'.repeat(150) + '1' + '}{2}'.repeat(150), '1,'.repeat(499) + '1', '9^9^9^9^9', '1e999999999', '%'.repeat(5000),
      `<think>${'\\boxed{1}'.repeat(5000)}</think>${'5 '.repeat(10_000)}cm`,
    ];
    for (const input of inputs) {
      const started = performance.now();
      answersEquivalent(input, '5');
      answersEquivalent(input, input);
      extractAnswer(input);
      formatScore(input);
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 2000, `${JSON.stringify(input.slice(0, 30))}: ${elapsed.toFixed(0)} ms`);
    }
  });
});
