"""One optimizer step of `dail` against `nll` on the same data: tokens/s and peak memory.

    python benchmarks/train_step.py --tokens 512,2048                         # tiny-random on CPU
    PYTHONPATH=. python benchmarks/train_step.py --preset qwen2.5-7b --tokens 2048,8192,16384,32768   # GPU

Each configuration runs in a fresh subprocess (clean peak memory): a single training sequence of the
given length (a short prompt + response), LoRA r 32 on all projections, gradient checkpointing, one
warm-up step then timed steps. `--naive` adds the authors' form for comparison: three full-logit
passes (one chunk spanning the whole sequence, no recomputation). Peak memory is
torch.cuda.max_memory_allocated on GPU and the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(args) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from dail_harness.training.config import LORA_TARGETS
    from dail_harness.training.engine import StudentHidden, compute_loss
    from dail_harness.training.examples import Example
    from dail_harness.training.losses import make_loss
    from dail_harness.training.policy import Policy

    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if args.preset:
        from benchmarks.hf_decode import build

        model, tok = build(args.preset, device, torch.bfloat16 if device == "cuda" else torch.float32)
    else:
        from transformers import AutoModelForCausalLM

        from dail_harness.models.loading import load_tokenizer, resolve_model

        path = resolve_model("tiny-random")
        model, tok = AutoModelForCausalLM.from_pretrained(path).to(device), load_tokenizer(path)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    peft = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    resp = torch.randint(10, vocab - 10, (args.tokens,), generator=g).tolist()
    prompts = {
        c: torch.randint(10, vocab - 10, (n,), generator=g).tolist()
        for c, n in (("student", 64), ("privileged", 512), ("negative", 128))
    }
    ex = Example("bench", resp, {c: p + resp for c, p in prompts.items()}, {c: len(p) for c, p in prompts.items()})
    loss = make_loss(args.loss, {"gamma": 0.1} if args.loss == "dail" else {})
    student = StudentHidden(peft)
    policy = Policy.wrap(peft)
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-5)
    chunk = args.tokens if args.naive else 1024

    def step():
        result, n = compute_loss(student, policy, [ex], loss, tok.pad_token_id or 0, device, chunk)
        result.loss.backward()
        opt.step()
        opt.zero_grad()
        return n

    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(args.steps):
        n = step()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    dt = (time.perf_counter() - t) / args.steps
    print(
        json.dumps(
            {
                "loss": args.loss + (" (naive)" if args.naive else ""),
                "tokens": n,
                "device": device,
                "seconds_per_step": dt,
                "tokens_per_s": n / dt,
                "peak_gib": peak,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None)
    ap.add_argument("--tokens", default="512,2048")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--naive", action="store_true", help="also run dail in the naive full-logit form")
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--loss", default="nll", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.tokens = int(args.tokens)
        return child(args)
    results = []
    for tokens in [int(t) for t in args.tokens.split(",")]:
        runs = [("nll", False), ("dail", False)] + ([("dail", True)] if args.naive else [])
        by = {}
        for loss, naive in runs:
            cmd = (
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--loss",
                    loss,
                    "--tokens",
                    str(tokens),
                    "--steps",
                    str(args.steps),
                ]
                + (["--preset", args.preset] if args.preset else [])
                + (["--naive"] if naive else [])
                + (["--cpu"] if args.cpu else [])
            )
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                tail = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"
                print(f"{tokens:6} tokens  {loss}{' (naive)' if naive else '':8}: {tail}")
                results.append({"loss": loss, "naive": naive, "tokens": tokens, "error": tail})
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            by[(loss, naive)] = r
            results.append(r)
            base = by.get(("nll", False))
            ratio = (
                f"  {r['tokens_per_s'] / base['tokens_per_s']:.2f}x nll speed, "
                f"{r['peak_gib'] / base['peak_gib']:.2f}x nll memory"
                if base and r is not base
                else ""
            )
            print(
                f"{tokens:6} tokens  {r['loss']:12} {r['tokens_per_s']:9.0f} tok/s  "
                f"peak {r['peak_gib']:.2f} GiB{ratio}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
