"""transformers `generate` with random weights in a real model's shape (speed only), the same
shapes and prompt ids as `rlvr bench rollout --model random:<arch>`. One JSON line per size.

  python3 scripts/bench_transformers_gpu.py [--arch smollm2-135m|qwen2-0.5b] [--device cuda|cpu]
      [--prompts 8 32 64] [--group 8] [--max-new-tokens 128]
"""
import argparse, json, time

import torch, transformers

p = argparse.ArgumentParser()
p.add_argument("--arch", default="smollm2-135m", choices=["smollm2-135m", "qwen2-0.5b"])
p.add_argument("--device", default="cuda")
p.add_argument("--prompts", type=int, nargs="+", default=[8, 32, 64])
p.add_argument("--group", type=int, default=8)
p.add_argument("--max-new-tokens", type=int, default=128)
a = p.parse_args()

if a.arch == "smollm2-135m":  # = rlvr's ModelConfig::preset("smollm2-135m")
    cfg = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
        rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2)
    cls, pad = transformers.LlamaForCausalLM, 2
else:  # Qwen2-0.5B's config.json
    cfg = transformers.Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
        max_position_embeddings=32768, tie_word_embeddings=True, bos_token_id=151643,
        eos_token_id=151645, pad_token_id=151643)
    cls, pad = transformers.Qwen2ForCausalLM, 151643
dtype = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
torch.manual_seed(0)
model = cls(cfg).to(device=a.device, dtype=dtype).eval()
sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
for prompts_n in a.prompts:
    lens = [48 + i % 8 for i in range(prompts_n)]
    L = max(lens)
    ids = torch.full((prompts_n, L), pad, dtype=torch.long)
    mask = torch.zeros((prompts_n, L), dtype=torch.long)
    for i, n in enumerate(lens):  # left padding
        ids[i, L - n:] = torch.tensor([3 + (j * 7 + i * 13) % 90 for j in range(n)])
        mask[i, L - n:] = 1
    ids, mask = ids.to(a.device), mask.to(a.device)
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
              num_return_sequences=a.group, max_new_tokens=a.max_new_tokens,
              min_new_tokens=a.max_new_tokens, pad_token_id=pad)
    with torch.inference_mode():
        # Warm-up at this batch shape (kernel selection, allocator), then the timed run.
        model.generate(input_ids=ids, attention_mask=mask,
                       **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
        sync(); t0 = time.time()
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
        sync(); wall = time.time() - t0
    n = (out.shape[1] - L) * out.shape[0]
    print(json.dumps({
        "bench": "rollout", "impl": "transformers", "model": f"random:{a.arch}",
        "dtype": str(dtype).replace("torch.", ""), "prompts": prompts_n, "group": a.group,
        "max_new_tokens": a.max_new_tokens, "generated_tokens": n, "wall_s": round(wall, 3),
        "generated_tokens_per_s": round(n / wall, 1), "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu"}),
        flush=True)
