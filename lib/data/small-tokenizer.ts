// A small tokenizer in Qwen2's tokenizer.json format, for toy tasks, tests and demos on a CPU:
// byte-level BPE (so any text round-trips exactly) over the 256 byte symbols plus merges, the
// ChatML special tokens and a ChatML chat template. Merges come from explicit "a b" pairs and
// from whole words: each word (and its space-prefixed form) gets the left-to-right chain of
// merges that builds it, so it encodes as one token. A vocabulary of a few hundred ids keeps the
// LM head and sampling cheap. Written as files and loaded with Tokenizer.load like any other.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';

/** GPT-2's byte → printable-character table that ByteLevel BPE vocabularies are written in. */
function bytesToUnicode(): string[] {
  const printable = new Set<number>();
  for (const [lo, hi] of [[33, 126], [161, 172], [174, 255]] as const) for (let b = lo; b <= hi; b++) printable.add(b);
  const table: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable.has(b) ? b : 256 + extra++);
  return table;
}

/** ChatML, as Qwen2 writes it. */
export const CHATML_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface SmallTokenizerOptions {
  /** Merges as "a b" pairs of symbols (byte-level characters), in rank order. */
  merges?: readonly string[];
  /** Words to make single tokens (alone and after a space: 'is' and ' is'). */
  words?: readonly string[];
  /** Added tokens matched before BPE and decoded as written (e.g. '<think>'); not special, so decoding keeps them. */
  addedTokens?: readonly string[];
  /** Default CHATML_TEMPLATE. */
  chatTemplate?: string;
}

export interface SmallTokenizerFiles {
  'tokenizer.json': object;
  'tokenizer_config.json': object;
  /** Token id of every vocabulary entry and added token by its text (byte-level form for BPE entries). */
  ids: Record<string, number>;
}

/** The files of a small byte-level BPE tokenizer (see the top of this file). */
export function smallTokenizerFiles(options: SmallTokenizerOptions = {}): SmallTokenizerFiles {
  const bytes = bytesToUnicode();
  const vocab: Record<string, number> = {};
  const add = (symbol: string) => {
    if (!(symbol in vocab)) vocab[symbol] = Object.keys(vocab).length;
  };
  bytes.forEach(add);
  const merges: string[] = [];
  const merge = (a: string, b: string) => {
    if (vocab[a] === undefined || vocab[b] === undefined) throw new R1VError('ARGUMENT', `smallTokenizerFiles: merge "${a} ${b}" joins unknown symbols`);
    if (vocab[a + b] !== undefined) return;
    merges.push(`${a} ${b}`);
    add(a + b);
  };
  for (const m of options.merges ?? []) {
    const parts = m.split(' ');
    if (parts.length !== 2) throw new R1VError('ARGUMENT', `smallTokenizerFiles: merge "${m}" is not two symbols separated by a space`);
    merge(parts[0]!, parts[1]!);
  }
  const encoder = new TextEncoder();
  const space = bytes[0x20]!;
  // Longer words first: a shorter word's merges (say 'is') would otherwise rank before a longer
  // word's chain ('assistant') and break it.
  const words = [...(options.words ?? [])].sort((a, b) => b.length - a.length);
  for (const word of words) {
    // The word left to right, then the space-prefixed form as space + word (merges apply by rank,
    // so a chain starting at the space would lose to the word's own earlier merges).
    const symbols = Array.from(encoder.encode(word), (b) => bytes[b]!);
    let acc = symbols[0]!;
    for (const s of symbols.slice(1)) {
      merge(acc, s);
      acc += s;
    }
    merge(space, acc);
  }
  const next = Object.keys(vocab).length;
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const extra = [...(options.addedTokens ?? [])];
  const addedToken = (id: number, content: string, special: boolean) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...specials.map((s, i) => addedToken(next + i, s, true)), ...extra.map((s, i) => addedToken(next + specials.length + i, s, false))],
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  const config = {
    add_prefix_space: false, bos_token: null, chat_template: options.chatTemplate ?? CHATML_TEMPLATE, clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>', pad_token: '<|endoftext|>', tokenizer_class: 'Qwen2Tokenizer', unk_token: null,
  };
  const ids: Record<string, number> = { ...vocab };
  [...specials, ...extra].forEach((s, i) => (ids[s] = next + i));
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': config, ids };
}

/** Writes tokenizer.json and tokenizer_config.json of a small tokenizer into dir (created if needed). */
export async function writeSmallTokenizer(dir: string, options: SmallTokenizerOptions = {}): Promise<SmallTokenizerFiles> {
  const files = smallTokenizerFiles(options);
  try {
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(files['tokenizer.json']));
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files['tokenizer_config.json']));
  } catch (error) {
    throw new R1VError('IO', `writeSmallTokenizer(${dir}): ${(error as Error).message}`, { cause: error });
  }
  return files;
}
