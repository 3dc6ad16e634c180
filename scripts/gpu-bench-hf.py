#!/usr/bin/env python3
"""The transformers side of scripts/gpu-bench.mjs, run on the GPU machine (python3 there has torch and
transformers).

  make --shape llama7b|gpt2 --out DIR
      Writes a random-weight fp16 Hugging Face checkpoint: Llama-2-7B's shape (hidden 4096, 32 layers, 32
      heads, intermediate 11008, vocab 32000; 13.5 GB in 4 GB shards) or GPT-2 small (124M). The weights
      are initialised on the GPU by transformers' own init (normal, std 0.02; norms 1), so logits stay
      finite and near unit scale, then saved with save_pretrained. Skipped when DIR already holds it.
  peer --model DIR --prompt FILE --new-tokens N [--out FILE]
      transformers generate() on that checkpoint, fp16 on cuda, greedy, batch 1, eager (the default
      cache): ms per output token = (time of N+1 new tokens − time of 1) / N, so prompt processing is
      left out; the median of 3 runs of each after a warm-up. Also returns the greedy tokens, which the
      bench compares with zinfer's.
Prints one JSON object on stdout's last line.
"""
import argparse
import json
import os
import sys
import time

import torch


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make(shape, out):
    stamp = os.path.join(out, 'zinfer-bench-stamp.json')
    want = {'shape': shape, 'version': 1}
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                log(f'{out}: already written')
                return {'dir': out, 'seconds': 0, 'reused': True}
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    t0 = time.perf_counter()
    torch.manual_seed(0)
    if shape == 'llama7b':
        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                          tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
        cls = LlamaForCausalLM
    elif shape == 'gpt2':
        cfg = GPT2Config()  # 124M: n_embd 768, 12 layers, 12 heads, vocab 50257, n_positions 1024
        cls = GPT2LMHeadModel
    else:
        raise SystemExit(f'unknown shape {shape}')
    # Built on the GPU (27 GB in f32 for the 7B shape, then halved): transformers' init runs there in
    # seconds, where the CPU takes minutes.
    with torch.device('cuda'):
        model = cls(cfg)
    model = model.half().eval()
    torch.cuda.empty_cache()
    n = sum(p.numel() for p in model.parameters())
    t1 = time.perf_counter()
    log(f'{shape}: {n / 1e9:.3f} B parameters initialised in {t1 - t0:.1f} s; saving to {out}')
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, max_shard_size='4GB')
    with open(stamp, 'w') as f:
        json.dump(want, f)
    t2 = time.perf_counter()
    log(f'{shape}: saved in {t2 - t1:.1f} s')
    return {'dir': out, 'parameters': n, 'seconds': t2 - t0, 'reused': False}


def peer(model_dir, prompt_file, new_tokens):
    from transformers import AutoModelForCausalLM
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float16, device_map='cuda')
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float16, device_map='cuda')
    model.eval()
    load_s = time.perf_counter() - t0
    with open(prompt_file) as f:
        prompt = json.load(f)
    ids = torch.tensor([prompt], dtype=torch.long, device='cuda')

    def generate(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t, out[0, len(prompt):].tolist()

    generate(4)  # warm-up
    one = sorted(generate(1)[0] for _ in range(3))[1]
    runs = [generate(new_tokens + 1) for _ in range(3)]
    full = sorted(r[0] for r in runs)[1]
    ms = (full - one) / new_tokens * 1000
    log(f'transformers {model_dir}: {ms:.2f} ms/token (1 token {one * 1000:.1f} ms, {new_tokens + 1} tokens {full * 1000:.1f} ms; load {load_s:.1f} s)')
    return {'ms_per_token': ms, 'first_token_ms': one * 1000, 'load_s': load_s, 'tokens': runs[0][1],
            'torch': torch.__version__, 'transformers': __import__('transformers').__version__}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    m = sub.add_parser('make')
    m.add_argument('--shape', required=True)
    m.add_argument('--out', required=True)
    p = sub.add_parser('peer')
    p.add_argument('--model', required=True)
    p.add_argument('--prompt', required=True)
    p.add_argument('--new-tokens', type=int, default=64)
    a = ap.parse_args()
    r = make(a.shape, a.out) if a.cmd == 'make' else peer(a.model, a.prompt, a.new_tokens)
    print(json.dumps(r))


if __name__ == '__main__':
    main()
