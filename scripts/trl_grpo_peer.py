"""TRL's GRPOTrainer for a few steps on the model and batch of rlvr's default run (single-digit
additions with a \\boxed{} answer; 4 prompts x 8 samples, 48 new tokens, T = 1, no KL), for the
RL step time. One JSON line.

  python3 scripts/trl_grpo_peer.py --model HF_DIR [--device cuda|cpu] [--steps 5]
      [--prompts 4] [--group 8] [--max-new-tokens 48] [--lr 1e-4]

HF_DIR: e.g. `rlvr export --model default --out DIR` (the same weights rlvr trains).
"""
import argparse, json, os, random, re, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--device", default="cuda")
p.add_argument("--steps", type=int, default=5)
p.add_argument("--prompts", type=int, default=4)
p.add_argument("--group", type=int, default=8)
p.add_argument("--max-new-tokens", type=int, default=48)
p.add_argument("--lr", type=float, default=1e-4)
a = p.parse_args()
cuda = a.device.startswith("cuda")
if not cuda:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

import torch, transformers, trl, datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

rng = random.Random(0)
rows = []
for _ in range(a.prompts * (a.steps + 2)):
    x, y = rng.randrange(10), rng.randrange(10)
    q = f"What is {x} + {y}? Put the final answer in \\boxed{{}}."
    rows.append({"prompt": [{"role": "user", "content": q}], "answer": str(x + y)})
data = datasets.Dataset.from_list(rows)


def boxed_reward(completions, answer, **kw):
    out = []
    for c, gold in zip(completions, answer):
        text = c[-1]["content"] if isinstance(c, list) else c
        m = re.findall(r"\\boxed\{([^{}]*)\}", text)
        out.append(1.0 if m and m[-1].strip() == gold else 0.0)
    return out


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.logs, self.t0 = [], [], None

    def on_step_begin(self, args, state, control, **kw):
        if cuda:
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.t0)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs:
            self.logs.append(dict(logs))


tok = AutoTokenizer.from_pretrained(a.model)
tok.padding_side = "left"
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
dtype = torch.bfloat16 if cuda else torch.float32
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device)
out_dir = tempfile.mkdtemp(prefix="trl-grpo-")
cfg = trl.GRPOConfig(
    output_dir=out_dir, per_device_train_batch_size=a.prompts * a.group,
    num_generations=a.group, max_completion_length=a.max_new_tokens, temperature=1.0,
    learning_rate=a.lr, beta=0.0, max_steps=a.steps, logging_steps=1, save_strategy="no",
    report_to="none", bf16=cuda, use_cpu=not cuda, gradient_accumulation_steps=1,
    dataloader_num_workers=0, seed=0, use_vllm=False,
    gradient_checkpointing=False)  # rlvr does not checkpoint either; TRL turns it on by default
timer = StepTimer()
trainer = trl.GRPOTrainer(model=model, reward_funcs=[boxed_reward], args=cfg,
                          train_dataset=data, processing_class=tok, callbacks=[timer])
if cuda:
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
trainer.train()
wall = time.perf_counter() - t0
rewards = [l["reward"] for l in timer.logs if "reward" in l]
later = timer.times[1:] or timer.times
print(json.dumps({
    "bench": "step", "impl": "trl.GRPOTrainer", "model": a.model, "steps": len(timer.times),
    "prompts_per_step": a.prompts, "group_size": a.group, "max_new_tokens": a.max_new_tokens,
    "step_s": sum(timer.times) / max(len(timer.times), 1),
    "step_s_after_first": sum(later) / max(len(later), 1),
    "per_step_s": [round(t, 3) for t in timer.times], "reward_mean": rewards,
    "wall_s": round(wall, 2), "dtype": str(dtype).replace("torch.", ""),
    "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    "trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
    "device": torch.cuda.get_device_name(0) if cuda else "cpu"}), flush=True)
