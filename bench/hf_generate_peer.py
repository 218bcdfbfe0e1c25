#!/usr/bin/env python3
"""The peer of `npm run bench:rollout` on CUDA: Hugging Face transformers' generate() on the
language model of an InternVL config (Qwen2ForCausalLM from its llm_config), random weights in
bf16 on the GPU, for the same batch sizes, prompt length and number of new tokens.

Decode throughput is the language model's alone; the vision tower only adds prefill work (its
features replace the image tokens' embeddings, the sequence lengths stay the same), so the prompts
here are text-only and only the decode rates are compared.

Timing: prefill = generate(max_new_tokens=1); decode = generate(max_new_tokens=M) minus that, for
the M - 1 tokens after the first (B*(M - 1) tokens). Sampling at temperature 1 with top-k and
top-p off; min_new_tokens = M keeps end-of-sequence from cutting samples short. Medians of
--repeats runs after a warm-up. Prints one line of JSON.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM

LLM_KEYS = (
    'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
    'num_key_value_heads', 'max_position_embeddings', 'rope_theta', 'rms_norm_eps', 'tie_word_embeddings',
    'hidden_act', 'bos_token_id', 'eos_token_id',
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--config', required=True, help='InternVL config.json (its llm_config is used)')
    ap.add_argument('--batches', default='1,16,64')
    ap.add_argument('--prompt-len', type=int, default=512)
    ap.add_argument('--new-tokens', type=int, default=256)
    ap.add_argument('--repeats', type=int, default=3)
    args = ap.parse_args()

    with open(args.config) as f:
        llm = json.load(f)['llm_config']
    config = Qwen2Config(**{k: llm[k] for k in LLM_KEYS if k in llm})
    torch.manual_seed(0)
    with torch.device('cuda'):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    pad = config.eos_token_id if config.eos_token_id is not None else 0
    prompt_len, new_tokens = args.prompt_len, args.new_tokens

    def timed(ids, n):
        torch.cuda.synchronize()
        started = time.perf_counter()
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
            top_p=1.0, max_new_tokens=n, min_new_tokens=n, pad_token_id=pad,
        )
        torch.cuda.synchronize()
        assert out.shape == (ids.shape[0], prompt_len + n), out.shape
        return (time.perf_counter() - started) * 1000

    rows = []
    for batch in (int(b) for b in args.batches.split(',')):
        # Ids below Qwen2's special tokens (151643 on).
        ids = torch.randint(0, min(config.vocab_size, 151643), (batch, prompt_len), device='cuda')
        timed(ids, 8)  # warm-up
        prefill = statistics.median(timed(ids, 1) for _ in range(args.repeats))
        full = statistics.median(timed(ids, new_tokens) for _ in range(args.repeats))
        decode = full - prefill
        rows.append({
            'batch': batch, 'prefill_ms': prefill, 'decode_ms': decode,
            'prefill_tokens_per_s': batch * prompt_len * 1000 / prefill,
            'decode_tokens_per_s': batch * (new_tokens - 1) * 1000 / decode,
        })
        print(f'B={batch}: prefill {prefill:.1f} ms, decode {decode / (new_tokens - 1):.2f} ms/step', file=sys.stderr, flush=True)

    print(json.dumps({
        'transformers': transformers.__version__, 'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(),
        'attn_implementation': model.config._attn_implementation, 'dtype': 'bf16',
        'prompt_len': prompt_len, 'new_tokens': new_tokens, 'repeats': args.repeats, 'rows': rows,
    }))


if __name__ == '__main__':
    main()
