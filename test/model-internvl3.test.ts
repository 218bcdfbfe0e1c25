// The real InternVL3-1B shape (InternViT-300M + Qwen2.5-0.5B with its own LM head, 0.94B
// parameters; its config.json as published, dynamic NTK rope_scaling included) on the CPU:
// names and shapes of the Hugging Face checkpoint, random weights → save (bf16, sharded like
// HF's) → load → one forward of a short prompt with one 448-px tile.
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { bf16ToF32, Engine, f32ToBf16, openCheckpoint, VisionLanguageModel } from '../lib/index.js';
import { rng } from './helpers.js';

const config = JSON.parse(readFileSync(new URL('./fixtures/internvl3-1b-config.json', import.meta.url), 'utf8')) as unknown;
const IMG_CONTEXT = 151667;  // InternVL3's <IMG_CONTEXT> in its Qwen2.5 tokenizer

/** The checkpoint's tensors as published (written out from the module definitions, not from r1v). */
function expectedShapes(): Map<string, number[]> {
  const s = new Map<string, number[]>();
  const v = 'vision_model.', c = 1024, f = 4096;
  s.set(`${v}embeddings.class_embedding`, [1, 1, c]);
  s.set(`${v}embeddings.patch_embedding.weight`, [c, 3, 14, 14]);
  s.set(`${v}embeddings.patch_embedding.bias`, [c]);
  s.set(`${v}embeddings.position_embedding`, [1, 1025, c]);
  for (let i = 0; i < 24; i++) {
    const l = `${v}encoder.layers.${i}.`;
    for (const n of ['norm1', 'norm2']) {
      s.set(`${l}${n}.weight`, [c]);
      s.set(`${l}${n}.bias`, [c]);
    }
    s.set(`${l}attn.qkv.weight`, [3 * c, c]);
    s.set(`${l}attn.qkv.bias`, [3 * c]);
    s.set(`${l}attn.proj.weight`, [c, c]);
    s.set(`${l}attn.proj.bias`, [c]);
    s.set(`${l}mlp.fc1.weight`, [f, c]);
    s.set(`${l}mlp.fc1.bias`, [f]);
    s.set(`${l}mlp.fc2.weight`, [c, f]);
    s.set(`${l}mlp.fc2.bias`, [c]);
    s.set(`${l}ls1`, [c]);
    s.set(`${l}ls2`, [c]);
  }
  s.set('mlp1.0.weight', [4 * c]);
  s.set('mlp1.0.bias', [4 * c]);
  s.set('mlp1.1.weight', [896, 4 * c]);
  s.set('mlp1.1.bias', [896]);
  s.set('mlp1.3.weight', [896, 896]);
  s.set('mlp1.3.bias', [896]);
  const m = 'language_model.model.';
  s.set(`${m}embed_tokens.weight`, [151674, 896]);
  for (let i = 0; i < 24; i++) {
    const l = `${m}layers.${i}.`;
    s.set(`${l}input_layernorm.weight`, [896]);
    s.set(`${l}post_attention_layernorm.weight`, [896]);
    s.set(`${l}self_attn.q_proj.weight`, [896, 896]);
    s.set(`${l}self_attn.q_proj.bias`, [896]);
    for (const kv of ['k_proj', 'v_proj']) {
      s.set(`${l}self_attn.${kv}.weight`, [128, 896]);  // 2 KV heads × 64
      s.set(`${l}self_attn.${kv}.bias`, [128]);
    }
    s.set(`${l}self_attn.o_proj.weight`, [896, 896]);
    s.set(`${l}mlp.gate_proj.weight`, [4864, 896]);
    s.set(`${l}mlp.up_proj.weight`, [4864, 896]);
    s.set(`${l}mlp.down_proj.weight`, [896, 4864]);
  }
  s.set(`${m}norm.weight`, [896]);
  s.set('language_model.lm_head.weight', [151674, 896]);  // llm_config leaves tie_word_embeddings at Qwen2's default, false
  return s;
}

describe('InternVL3-1B shape on the CPU', function () {
  this.timeout(600_000);

  it('random weights → save (bf16, sharded) → load → one forward of a prompt with one tile', async () => {
    const next = rng('internvl3-1b');
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'r1v-internvl3-'));
    using e = Engine.create({ device: 'cpu', seed: 1 });
    const expected = expectedShapes();
    let sample: { name: string; values: Float32Array };
    {
      using m = VisionLanguageModel.create(e, config, { seed: 11 });
      const params = m.parameters();
      assert.deepEqual(new Map(params.map((p) => [p.name, [...p.shape]])), expected);
      const total = [...expected.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
      assert.equal(m.numParameters(), total);
      assert.ok(total > 0.93e9 && total < 0.94e9, `${total} parameters`);  // InternVL3-1B's published 0.9B
      sample = { name: 'language_model.model.layers.3.self_attn.k_proj.weight', values: await m.getParameter('language_model.model.layers.3.self_attn.k_proj.weight') };
      await m.save(dir, { dtype: 'bf16', maxShardBytes: 1e9 });
    }
    const files = await fsp.readdir(dir);
    assert.ok(files.includes('model.safetensors.index.json') && files.includes('config.json'), files.join());
    {
      await using ckpt = await openCheckpoint(dir);
      assert.deepEqual(new Set(ckpt.names()), new Set(expected.keys()));
      for (const name of ckpt.names()) assert.equal(ckpt.entry(name).dtype, 'BF16');
    }
    using loaded = await VisionLanguageModel.load(e, dir, { imageContextTokenId: IMG_CONTEXT });
    assert.deepEqual(await loaded.getParameter(sample.name), bf16ToF32(f32ToBf16(sample.values)));
    // <img> 256 × <IMG_CONTEXT> </img> + a few text tokens; score the text continuation
    const text = Array.from({ length: 8 }, () => Math.floor(next() * 150_000));
    const inputIds = Int32Array.from([151665, ...new Array<number>(256).fill(IMG_CONTEXT), 151666, ...text]);
    const targets = new Int32Array(inputIds.length).fill(-100);
    for (let t = 258; t + 1 < inputIds.length; t++) targets[t] = inputIds[t + 1]!;
    const pixelValues = Float32Array.from({ length: 3 * 448 * 448 }, () => 2 * next() - 1);
    const f = await loaded.forward({ inputIds, targets, cuSeqlens: Int32Array.from([0, inputIds.length]), pixelValues });
    assert.equal(f.logprobs.length, 7);
    // N(0, 0.02²) weights give nearly uniform next-token distributions over 151,674 tokens
    for (let i = 0; i < 7; i++) {
      assert.ok(Number.isFinite(f.logprobs[i]) && f.logprobs[i]! < 0, `logprob ${f.logprobs[i]}`);
      assert.ok(Math.abs(f.entropy[i]! - Math.log(151674)) < 0.5, `entropy ${f.entropy[i]} vs ln V ${Math.log(151674)}`);
    }
    await fsp.rm(dir, { recursive: true });
  });
});
