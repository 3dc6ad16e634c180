#!/usr/bin/env python3
"""The peer of scripts/gpu-moe-bench.mjs: transformers' MixtralForCausalLM with device_map="auto" on the
GPUs CUDA_VISIBLE_DEVICES names, same shape, bf16, batch-1 greedy decode. The model is built on the meta
device (init_empty_weights: no 93 GB CPU init), placed as from_pretrained(device_map="auto") places it
(get_balanced_memory, then infer_auto_device_map with the model's _no_split_modules), and materialised on
its GPUs with random values: layer 0's tensors are drawn (normal, std 0.02; 1-D norm scales 1), every
other layer gets a copy of them on its own GPU, as zinfer's bench repeats layer 0 (values do not change
timings). dispatch_model then adds the hooks that move activations between GPUs, as from_pretrained does.
ms per output token = (time of N+1 new tokens − time of 1) / N (prompt processing left out), median of 3
runs after a warm-up. --cpu runs the same flow on the CPU (the bench's local check). Prints one JSON line
last."""
import argparse
import json
import sys
import time


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build(a, torch):
    from accelerate import dispatch_model, infer_auto_device_map, init_empty_weights
    from accelerate.utils import get_balanced_memory, set_module_tensor_to_device
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(hidden_size=a.hidden, intermediate_size=a.intermediate, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                        num_key_value_heads=a.kv_heads, num_local_experts=a.experts, num_experts_per_tok=a.top_k, vocab_size=a.vocab,
                        max_position_embeddings=4096, rope_theta=1e6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    dtype = torch.float32 if a.cpu else torch.bfloat16
    with init_empty_weights():
        model = MixtralForCausalLM(cfg)
    model = model.to(dtype)  # still meta; fixes the dtype the device map sizes and the values take
    no_split = list(getattr(model, '_no_split_modules', None) or ['MixtralDecoderLayer'])
    if a.cpu:
        device_map = {'': 'cpu'}
    else:
        max_memory = get_balanced_memory(model, dtype=dtype, low_zero=False, no_split_module_classes=no_split)
        device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split, dtype=dtype)
        off = sorted({m for m, d in device_map.items() if d in ('cpu', 'disk')})
        if off:
            raise SystemExit(f'the model does not fit the visible GPUs: device_map="auto" puts {", ".join(off[:4])} off them')
    t0 = time.time()
    torch.manual_seed(0)
    layer0 = {}
    for name, p in list(model.named_parameters()):
        device = place(device_map, name)
        parts = name.split('.')
        is_layer = len(parts) > 3 and parts[1] == 'layers'
        key = '.'.join(parts[3:]) if is_layer else None
        if is_layer and key in layer0:
            value = layer0[key].to(device, copy=True)
        else:
            value = torch.empty(p.shape, dtype=dtype, device=device)
            if p.dim() > 1:
                value.normal_(0.0, 0.02)
            else:
                value.fill_(1.0)
            if is_layer:
                layer0[key] = value
        set_module_tensor_to_device(model, name, device, value=value)
    if not a.cpu:
        torch.cuda.synchronize()
    fill_s = time.time() - t0
    params = sum(p.numel() for p in model.parameters())
    devices = sorted({str(v) for v in device_map.values()})
    log(f'materialised {params / 1e9:.2f}B parameters on {", ".join(devices)} in {fill_s:.1f} s')
    if not a.cpu:
        model = dispatch_model(model, device_map=device_map)
    model.eval()
    return model, {'params': params, 'fill_s': fill_s, 'devices': devices, 'device_map_entries': len(device_map)}


def place(device_map, name):
    """The device a parameter goes to: the device map's longest matching module prefix."""
    best, where = -1, 'cpu'
    for module, device in device_map.items():
        if (module == '' or name == module or name.startswith(module + '.')) and len(module) > best:
            best, where = len(module), device
    return where if isinstance(where, str) else f'cuda:{where}'


def main():
    ap = argparse.ArgumentParser()
    for k in ('hidden', 'layers', 'intermediate', 'heads', 'kv-heads', 'experts', 'top-k', 'vocab'):
        ap.add_argument(f'--{k}', type=int, required=True)
    ap.add_argument('--new-tokens', type=int, default=32)
    ap.add_argument('--prompt', type=int, default=32)
    ap.add_argument('--cpu', action='store_true')
    a = ap.parse_args()

    import torch
    import transformers
    t0 = time.time()
    model, info = build(a, torch)
    load_s = time.time() - t0
    first = 'cpu' if a.cpu else 'cuda:0'
    ids = torch.randint(100, a.vocab - 100, (1, a.prompt), device=first)
    sync = (lambda: None) if a.cpu else torch.cuda.synchronize

    def generate(n):
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        sync()
        return time.perf_counter() - t, out[0, a.prompt:].tolist()

    generate(4)  # warm-up (kernels, allocator)
    generate(4)
    one = sorted(generate(1)[0] for _ in range(3))[1]
    runs = [generate(a.new_tokens + 1) for _ in range(3)]
    full = sorted(r[0] for r in runs)[1]
    ms = (full - one) / a.new_tokens * 1000
    log(f'transformers MixtralForCausalLM device_map=auto: {ms:.2f} ms/token (1 token {one * 1000:.1f} ms, {a.new_tokens + 1} tokens {full * 1000:.1f} ms; load {load_s:.1f} s)')
    print(json.dumps({'ms_per_token': ms, 'first_token_ms': one * 1000, 'load_s': load_s, 'new_tokens': a.new_tokens, 'tokens': runs[0][1], **info,
                      'weights_repeat_layer0': True, 'torch': torch.__version__, 'transformers': transformers.__version__}))


if __name__ == '__main__':
    main()
