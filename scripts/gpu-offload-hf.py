#!/usr/bin/env python3
"""The peer of scripts/gpu-offload-bench.mjs: transformers + accelerate CPU offload on the same Llama shape
and batch, on the same card, in the same run. The model is built on the meta device, materialised on the
CPU in fp16 (one random layer generated, then copied into every layer, as zinfer's bench repeats layer 0:
values do not change timings, and generating 95 GB of random numbers would not fit the call), and
dispatched with a device_map from max_memory (GPU: room for the non-layer weights only), so accelerate's
hooks move every decoder layer from CPU memory to the GPU during the forward. Times one forward of
[batch, prompt] tokens after a warm-up forward of one short sequence. Prints one JSON line last."""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    for k in ("hidden", "layers", "intermediate", "heads", "kv-heads", "vocab", "batch", "prompt"):
        ap.add_argument(f"--{k}", type=int, required=True)
    ap.add_argument("--gpu-gib", type=float, default=4.0)
    a = ap.parse_args()

    import torch
    import transformers
    import accelerate
    from accelerate import dispatch_model, infer_auto_device_map, init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=a.hidden, intermediate_size=a.intermediate, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, vocab_size=a.vocab, max_position_embeddings=4096, tie_word_embeddings=False, torch_dtype=torch.float16)
    with init_empty_weights():
        model = LlamaForCausalLM(cfg)
    model = model.to(torch.float16)  # meta tensors; set_module_tensor_to_device casts values to the parameter dtype
    t0 = time.time()
    torch.manual_seed(0)
    layer0 = {}
    for name, p in list(model.named_parameters()):
        parts = name.split(".")
        is_layer = len(parts) > 3 and parts[1] == "layers"
        key = ".".join(parts[3:]) if is_layer else None
        if is_layer and key in layer0:
            value = torch.empty(p.shape, dtype=torch.float16)
            value.copy_(layer0[key])
        else:
            value = (torch.randn(p.shape, dtype=torch.float32) * 0.02).to(torch.float16) if p.dim() > 1 else torch.ones(p.shape, dtype=torch.float16)
            if is_layer:
                layer0[key] = value
        set_module_tensor_to_device(model, name, "cpu", value=value)
    fill_s = time.time() - t0
    params = sum(p.numel() for p in model.parameters())
    print(f"materialised {params / 1e9:.2f}B parameters on the CPU in {fill_s:.1f} s", file=sys.stderr)

    max_memory = {0: f"{a.gpu_gib}GiB", "cpu": "200GiB"}
    device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=["LlamaDecoderLayer"], dtype=torch.float16)
    on_cpu = sum(1 for v in device_map.values() if v == "cpu")
    model = dispatch_model(model, device_map=device_map, main_device=0)
    model.eval()

    ids = torch.randint(100, a.vocab - 100, (a.batch, a.prompt), device="cuda:0")
    with torch.inference_mode():
        model(ids[:1, :4])  # warm-up: kernels, hooks, allocator
        torch.cuda.synchronize()
        t = time.time()
        out = model(ids)
        torch.cuda.synchronize()
        forward_s = time.time() - t
    print(json.dumps({
        "forward_s": forward_s, "batch": a.batch, "prompt": a.prompt, "params": params, "fill_s": fill_s,
        "modules_on_cpu": on_cpu, "device_map_entries": len(device_map), "gpu_max_memory_gib": a.gpu_gib,
        "logits_finite": bool(torch.isfinite(out.logits[:, -1].float()).all().item()),
        "torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__,
        "card": torch.cuda.get_device_name(0),
    }))


if __name__ == "__main__":
    main()
