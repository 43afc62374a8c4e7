"""Mixed-policy rollout throughput against plain student sampling and the token-by-token scheme.

    python benchmarks/mixed_rollouts.py --batches 1,64 --new-tokens 1000          # tiny-random, CPU
    PYTHONPATH=. python benchmarks/mixed_rollouts.py --preset qwen2.5-7b --batches 1,64   # GPU, random weights

For each batch size: plain student sampling (tau = 0 on the same engine: drafting with nothing to
verify), then mixed rollouts with K = 8 drafts and with K = 1 (one forward per token per context, a
fair stand-in for the authors' scheme), at a tau calibrated for ~0.9 and ~0.5 acceptance. Prompts are
random tokens: a 128-token student prompt and a 512-token privileged prompt (the expert solution makes
it longer). Reports generated tokens/s and the ratios.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dail_harness.rollout.engine import MixedPolicyEngine, RolloutConfig, RolloutRequest


def make_requests(batch: int, vocab: int, student_len: int, privileged_len: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    common = torch.randint(10, vocab - 10, (privileged_len,), generator=g).tolist()
    return [RolloutRequest(f"b{i}", common[:student_len - 4] + [11, 12, 13, 14], common + [11, 12, 13, 14])
            for i in range(batch)]


def run(engine, requests, cfg):
    sync(engine.device)
    t = time.perf_counter()
    res = [r for b in engine.run(requests, cfg) for r in b]
    sync(engine.device)
    dt = time.perf_counter() - t
    tokens = sum(len(r.token_ids) for r in res)
    return {"seconds": dt, "tokens": tokens, "tokens_per_s": tokens / dt,
            "acceptance": sum(r.student_tokens for r in res) / max(tokens, 1)}


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def calibrate(engine, requests, target: float, base: RolloutConfig) -> float:
    """A tau whose acceptance on a short pilot is closest to `target` (bisection on log tau: a random
    model's probabilities sit near 1/vocab, so tau must be resolved on a log scale)."""
    import math

    lo, hi = math.log(1e-7), 0.0
    best = (9.0, 0.5)
    for _ in range(16):
        tau = math.exp((lo + hi) / 2)
        cfg = RolloutConfig(**{**base.__dict__, "tau": tau, "max_tokens": 48, "draft_tokens": 4})
        acc = run(engine, requests[:8], cfg)["acceptance"]
        best = min(best, (abs(acc - target), tau))
        if acc > target:
            lo = math.log(tau)
        else:
            hi = math.log(tau)
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None, help="build a model of these shapes (see hf_decode.py); default tiny-random")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--new-tokens", type=int, default=1000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--static", action="store_true", help="static KV caches (fixed shapes)")
    ap.add_argument("--compile", action="store_true", help="with --static on CUDA: CUDA graphs via torch.compile")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.preset:
        from benchmarks.hf_decode import build

        model, tok = build(args.preset, args.device, torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    else:
        from dail_harness.models.loading import load_causal_lm, load_tokenizer, resolve_model

        path = resolve_model("tiny-random")
        model, tok = load_causal_lm(path, device=args.device), load_tokenizer(path)
    engine = MixedPolicyEngine(model, tok, eos_ids=[])  # no EOS: every row generates the full length
    vocab = model.config.vocab_size
    base = RolloutConfig(temperature=1.0, top_p=1.0, seed=0, max_tokens=args.new_tokens, static_cache=args.static,
                         compile=args.compile)
    taus = {t: calibrate(engine, make_requests(8, vocab, 128, 512), t, base) for t in (0.9, 0.5)}
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        reqs = make_requests(batch, vocab, 128, 512)
        cfgs = [("plain student", 0.0, 8)]
        for target, tau in taus.items():
            cfgs += [(f"mixed K=8 (~{target})", tau, 8), (f"mixed K=auto (~{target})", tau, 0),
                     (f"mixed K=1 (~{target})", tau, 1)]
        plain = None
        for name, tau, K in cfgs:
            cfg = RolloutConfig(**{**base.__dict__, "tau": tau, "draft_tokens": K, "batch_size": batch})
            r = run(engine, reqs, cfg)
            plain = plain or r["tokens_per_s"]
            row = {"batch": batch, "config": name, "tau": tau, "K": K, **r, "vs_plain": r["tokens_per_s"] / plain}
            results.append(row)
        for target in taus:
            k1 = next(x for x in results if x["batch"] == batch and x["config"] == f"mixed K=1 (~{target})")
            for name in (f"mixed K=8 (~{target})", f"mixed K=auto (~{target})"):
                x = next(x for x in results if x["batch"] == batch and x["config"] == name)
                x["vs_k1"] = x["tokens_per_s"] / k1["tokens_per_s"]
        for x in [x for x in results if x["batch"] == batch]:
            extra = f"  {x['vs_k1']:.2f}x K=1" if "vs_k1" in x else ""
            print(f"batch {batch:3}  {x['config']:22} acceptance {x['acceptance']:.2f}  {x['tokens_per_s']:9.1f} tok/s"
                  f"  {x['vs_plain']:.2f}x plain{extra}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
