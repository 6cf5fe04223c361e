"""transformers `generate` on the GPU with SmolLM2-135M shapes and random weights (speed only),
the same shapes as runtime/tests/cuda.rs::rollout_throughput_smollm2_shape. One JSON line each."""
import json, sys, time
import torch, transformers
from transformers import LlamaConfig, LlamaForCausalLM

cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
                  rope_theta=100000.0, max_position_embeddings=8192, tie_word_embeddings=True,
                  bos_token_id=1, eos_token_id=2, pad_token_id=2)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16).eval()
for prompts_n in [int(x) for x in (sys.argv[1:] or ["8", "32", "64"])]:
    lens = [48 + i % 8 for i in range(prompts_n)]
    L = max(lens)
    ids = torch.full((prompts_n, L), 2, dtype=torch.long)
    mask = torch.zeros((prompts_n, L), dtype=torch.long)
    for i, n in enumerate(lens):  # left padding
        ids[i, L - n:] = torch.tensor([3 + (j * 7 + i * 13) % 90 for j in range(n)])
        mask[i, L - n:] = 1
    ids, mask = ids.cuda(), mask.cuda()
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=8,
              max_new_tokens=128, min_new_tokens=128, pad_token_id=2)
    with torch.inference_mode():
        model.generate(input_ids=ids[:1], attention_mask=mask[:1], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
        torch.cuda.synchronize(); t0 = time.time()
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
        torch.cuda.synchronize(); wall = time.time() - t0
    n = (out.shape[1] - L) * out.shape[0]
    print(json.dumps({"bench": "rollout", "impl": "transformers", "dtype": "bf16", "prompts": prompts_n, "group": 8,
                      "max_new_tokens": 128, "generated_tokens": n, "wall_s": round(wall, 3),
                      "generated_tokens_per_s": round(n / wall, 1), "torch": torch.__version__,
                      "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(0)}), flush=True)
