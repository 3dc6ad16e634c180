#!/usr/bin/env python3
"""Makes the parity fixtures: tiny random-weight Hugging Face checkpoints of every supported architecture,
with tokenizers trained here, and transformers' float32 reference outputs.

Run where python3 has torch, transformers and tokenizers (the GPU machine has them; the CPU is used, so
results do not depend on TF32 or the card):  python3 scripts/make-fixtures.py OUT_DIR
Each OUT_DIR/<name>/ gets config.json, safetensors weights (some bf16, some f16, one sharded), tokenizer
files, expected.json (prompt, ids, greedy continuation, versions) and expected-logits.safetensors.
"""
import inspect
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, MixtralConfig, OPTConfig, Qwen2Config,
                          Qwen2MoeConfig, Qwen3Config, AutoModelForCausalLM)

PROMPT_TOKENS = 24
NEW_TOKENS = 16
MIN_MARGIN = 1e-2  # greedy steps whose top-2 logits are closer than this would make parity flaky

CORPUS = """Once upon a time there was a little robot who lived in a quiet town by the sea.
Every morning the robot walked to the harbour and counted the boats that came in with the tide.
The fishermen waved, the gulls cried, and the baker on the corner sold warm bread to everyone.
One day a storm rolled over the hills, and the lights of the town went out one by one.
The robot remembered the old lighthouse and climbed the long stairs in the dark and the rain.
It turned the great lamp by hand until the beam swept across the water again.
The boats found their way home, and in the morning the whole town came to say thank you.
Transformers read a sequence of tokens and predict the next one, layer after layer.
Attention lets every position look back at the ones before it; the cache keeps keys and values.
Small models are quick to test, and exact tests catch the mistakes that large models hide.
Numbers like 3.14159, 2026 and 42 appear in text too, as do symbols: #, $, %, & and @.
Café, naïve, Straße, 東京, 中文, and emoji like 🙂 need more than one byte in UTF-8.
The quick brown fox jumps over the lazy dog while the five boxing wizards jump quickly.
""".splitlines()

PROMPT = ("Once upon a time the little robot climbed the lighthouse stairs in the storm, and the "
          "boats found their way home across the dark water of the harbour.")

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA2_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
               "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")


def byte_level_tokenizer(vocab_size, bos):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 128, "chat_template": CHATML,
           "eos_token": "<|endoftext|>", "bos_token": "<|begin_of_text|>" if bos else None,
           "add_bos_token": bos}
    return tok, cfg


def sentencepiece_like_tokenizer(vocab_size):
    # The classic Llama-2 tokenizer.json shape: metaspace normalizer, byte fallback, BOS template.
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 128, "chat_template": LLAMA2_CHAT,
           "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>", "add_bos_token": True}
    return tok, cfg


def rope_kwargs(cls, theta, scaling=None, partial=None):
    """transformers 5 takes rope_parameters; older versions rope_theta / rope_scaling / rotary_pct."""
    params = inspect.signature(cls.__init__).parameters
    if "rope_parameters" in params:
        rp = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            rp.update(scaling)
        if partial is not None:
            rp["partial_rotary_factor"] = partial
        return {"rope_parameters": rp}
    kw = {"rope_theta": theta}
    if scaling:
        kw["rope_scaling"] = scaling
    if partial is not None:
        kw["rotary_pct"] = partial
    return kw


def specs(vb, vs):
    common = dict(max_position_embeddings=128)
    llama = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, **common)
    return [
        ("gpt2", "bytelevel", "f32", False, GPT2Config(vocab_size=vb, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                                                       activation_function="gelu_new", bos_token_id=1, eos_token_id=0)),
        ("opt", "bytelevel-bos", "f32", False, OPTConfig(vocab_size=vb, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                                                         num_attention_heads=4, word_embed_proj_dim=64, pad_token_id=3,
                                                         bos_token_id=1, eos_token_id=0, **common)),
        ("gpt-neox", "bytelevel", "f32", False, GPTNeoXConfig(vocab_size=vb, hidden_size=64, num_hidden_layers=2,
                                                              num_attention_heads=4, intermediate_size=128, hidden_act="gelu",
                                                              use_parallel_residual=True, tie_word_embeddings=False,
                                                              bos_token_id=1, eos_token_id=0,
                                                              **rope_kwargs(GPTNeoXConfig, 10000.0, partial=0.5), **common)),
        ("llama2", "sentencepiece", "f32", False, LlamaConfig(vocab_size=vs, num_key_value_heads=4, rms_norm_eps=1e-5,
                                                               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                                                               **rope_kwargs(LlamaConfig, 10000.0), **llama)),
        ("llama3", "bytelevel-bos", "bf16", False, LlamaConfig(
            vocab_size=vb, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=0,
            **rope_kwargs(LlamaConfig, 500000.0, scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
            **llama)),
        ("mistral", "sentencepiece", "f32", True, MistralConfig(vocab_size=vs, num_key_value_heads=1, sliding_window=12,
                                                                head_dim=16, tie_word_embeddings=False, bos_token_id=1,
                                                                eos_token_id=2, **rope_kwargs(MistralConfig, 10000.0), **llama)),
        ("qwen2", "bytelevel", "f16", False, Qwen2Config(vocab_size=vb, num_key_value_heads=2, tie_word_embeddings=False,
                                                          use_sliding_window=False, bos_token_id=1, eos_token_id=0,
                                                          **rope_kwargs(Qwen2Config, 1000000.0), **llama)),
        ("qwen3", "bytelevel", "f32", False, Qwen3Config(vocab_size=vb, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
                                                          rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=0,
                                                          **rope_kwargs(Qwen3Config, 1000000.0), **llama)),
        # Mixture of Experts (the MoE issue): top-2 of 4 experts; Qwen2-MoE adds a sigmoid-gated shared expert.
        ("mixtral", "bytelevel", "f32", False, MixtralConfig(vocab_size=vb, num_key_value_heads=2, num_local_experts=4,
                                                              num_experts_per_tok=2, tie_word_embeddings=False, bos_token_id=1,
                                                              eos_token_id=0, **rope_kwargs(MixtralConfig, 1000000.0), **llama)),
        ("qwen2-moe", "bytelevel", "f32", False, Qwen2MoeConfig(vocab_size=vb, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                                                 moe_intermediate_size=64, shared_expert_intermediate_size=96,
                                                                 norm_topk_prob=False, tie_word_embeddings=False, bos_token_id=1,
                                                                 eos_token_id=0, **rope_kwargs(Qwen2MoeConfig, 1000000.0), **llama)),
        ("qwen2-moe-norm", "bytelevel", "bf16", False, Qwen2MoeConfig(vocab_size=vb, num_key_value_heads=2, num_experts=4,
                                                                       num_experts_per_tok=2, moe_intermediate_size=64,
                                                                       shared_expert_intermediate_size=96, norm_topk_prob=True,
                                                                       tie_word_embeddings=False, bos_token_id=1, eos_token_id=0,
                                                                       **rope_kwargs(Qwen2MoeConfig, 1000000.0), **llama)),
    ]


def randomize(model, seed):
    """transformers initialises norms to 1 and biases to 0; randomise everything so parity tests see every term."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "ln" in name):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.12 * torch.randn(p.shape, generator=g))


def greedy(model, ids):
    """Greedy continuation without the cache, recording the smallest top-2 logit margin."""
    seq = ids.clone()
    margin = float("inf")
    for _ in range(NEW_TOKENS):
        logits = model(seq, attention_mask=torch.ones_like(seq)).logits[0, -1]
        top = torch.topk(logits, 2).values
        margin = min(margin, float(top[0] - top[1]))
        seq = torch.cat([seq, logits.argmax().view(1, 1)], dim=1)
    return seq[0, ids.shape[1]:].tolist(), margin


def make(out, name, tok_kind, dtype, sharded, config, tok, tok_cfg):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    text_ids = tok.encode(PROMPT).ids
    assert len(text_ids) >= PROMPT_TOKENS, f"prompt too short for {name}: {len(text_ids)}"
    input_ids = torch.tensor([text_ids[:PROMPT_TOKENS]])
    torch_dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    for seed in range(1, 50):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
        randomize(model, seed)
        # The stored dtype is what transformers would load; the reference runs in float32 from those values.
        # Round parameters only: rounding the whole module would also round rotary inv_freq buffers, which
        # transformers recomputes in float32 when it loads a checkpoint.
        with torch.no_grad():
            for p in model.parameters():
                p.data = p.data.to(torch_dtype).to(torch.float32)
        with torch.no_grad():
            logits = model(input_ids, attention_mask=torch.ones_like(input_ids)).logits[0].float()
            tokens, margin = greedy(model, input_ids)
            gen = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=NEW_TOKENS,
                                 min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert gen[0, PROMPT_TOKENS:].tolist() == tokens, f"{name}: generate() disagrees with the no-cache loop"
        if margin >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: no seed gave a greedy margin >= {MIN_MARGIN}")
    save_kw = {"max_shard_size": "200KB"} if sharded else {}
    model.to(torch_dtype).save_pretrained(d, **save_kw)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({k: v for k, v in tok_cfg.items() if v is not None}, f, indent=2, ensure_ascii=False)
    save_file({"logits": logits.contiguous()}, os.path.join(d, "expected-logits.safetensors"))
    expected = {"architecture": name, "tokenizer": tok_kind, "stored_dtype": dtype, "sharded": sharded, "seed": seed,
                "prompt_text": PROMPT, "text_ids": text_ids, "input_ids": input_ids[0].tolist(),
                "greedy_tokens": tokens, "greedy_text": tok.decode(tokens, skip_special_tokens=False),
                "min_greedy_margin": margin, "transformers": transformers.__version__, "torch": torch.__version__}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2, ensure_ascii=False)
    files = sorted(os.listdir(d))
    print(f"{name}: seed {seed}, margin {margin:.4f}, files {files}")
    if "moe" in name or name == "mixtral":
        from safetensors import safe_open
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            for k in sorted(f.keys()):
                if ".0." in k or "layers" not in k:
                    print("  ", k, tuple(f.get_slice(k).get_shape()))
    print(open(os.path.join(d, "config.json")).read())


def main():
    out = sys.argv[1]
    torch.set_num_threads(4)
    bl, bl_cfg = byte_level_tokenizer(384, bos=False)
    blb, blb_cfg = byte_level_tokenizer(384, bos=True)
    sp, sp_cfg = sentencepiece_like_tokenizer(400)
    toks = {"bytelevel": (bl, bl_cfg), "bytelevel-bos": (blb, blb_cfg), "sentencepiece": (sp, sp_cfg)}
    only = set(sys.argv[2:])
    for name, tok_kind, dtype, sharded, config in specs(bl.get_vocab_size(), sp.get_vocab_size()):
        if only and name not in only:
            continue
        tok, tok_cfg = toks[tok_kind]
        make(out, name, tok_kind, dtype, sharded, config, tok, tok_cfg)
    print("transformers", transformers.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
