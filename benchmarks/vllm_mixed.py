"""Mixed-policy rollouts on vLLM: the in-engine pairing (the default) against plain vLLM sampling, the drafting
path it replaced, the hf engine, and the authors' scheme, side by side in one run on the same model.

    python benchmarks/vllm_mixed.py                                    # tiny-random and the Qwen2.5-0.5B shape
    python benchmarks/vllm_mixed.py --models tiny-random --pairs 1     # smoke test

Per model and number of pairs (traces), every configuration generates --new-tokens per trace (end tokens
suppressed, so every trace has the same length) from the same random-token prompts (student 96-160 tokens,
privileged 384-640):
- plain: `llm.generate` of the student prompts alone (the cost of sampling without any mixing);
- in-engine: `VLLMMixedRollout` (two requests per trace, paired by the logits processor);
- drafting: the prompt-log-prob path that was the vllm default before (K = 8);
- hf: the hf engine (lockstep) on the same weights;
- authors: the authors' scheme as they wrote it: each token is one request per context (max_tokens 1,
  top-20 log-probs), then their rule (up to five student draws from its top-20, kept when the privileged
  probability is >= tau and the token is in the privileged top-20, else a privileged top-20 draw).
The slow baselines run shorter traces (--short-tokens) where noted: their cost per token grows with the trace,
so a shorter trace flatters them. tau is calibrated for ~0.5 acceptance on the in-engine path.
Plain and paired engines are separate (the mixed engine turns chunked prefill off) with the same KV cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks.*` without PYTHONPATH
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from benchmarks.mixed_rollouts import make_requests, run
from dail_harness.rollout.base import RolloutConfig

MAX_MODEL_LEN = 2048


def model_path(name: str) -> str:
    from dail_harness.models.loading import resolve_model

    if name == "tiny-random":
        return resolve_model(name)
    from benchmarks.vllm_cpu import build_model

    return str(build_model(name, Path(tempfile.gettempdir()) / f"dail-bench-{name}"))


def engine(path: str, mixed: bool, kv_bytes: int):
    import vllm

    from dail_harness.backends.vllm import mixed_rollout_engine_args
    from dail_harness.models.cpu import cpu_dtype
    from dail_harness.rollout.vllm_worker import WORKER_EXTENSION

    args = dict(
        model=path,
        dtype=cpu_dtype()[0],
        seed=0,
        enforce_eager=True,
        generation_config="vllm",
        enable_prefix_caching=True,
        max_model_len=MAX_MODEL_LEN,
        kv_cache_memory_bytes=kv_bytes,
        worker_extension_cls=WORKER_EXTENSION,
    )
    if mixed:
        from dail_harness.rollout.vllm_pairs import PairedMixing

        args.update(mixed_rollout_engine_args(path, MAX_MODEL_LEN), logits_processors=[PairedMixing])
    return vllm.LLM(**args)


def plain(llm, reqs, new_tokens: int, eos: list[int]) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    t = time.perf_counter()
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=r.student_ids) for r in reqs],
        SamplingParams(temperature=1.0, max_tokens=new_tokens, ignore_eos=True, detokenize=False),
        use_tqdm=False,
    )
    dt = time.perf_counter() - t
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"seconds": dt, "tokens": tokens, "tokens_per_s": tokens / dt, "acceptance": None}


def authors(llm, reqs, cfg: RolloutConfig, eos: list[int]) -> dict:
    """One vLLM request per context per token with top-20 log-probs, and the authors' rule in Python."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    rng = random.Random(cfg.seed)
    params = SamplingParams(max_tokens=1, logprobs=20, temperature=1.0, detokenize=False)
    traces: list[list[int]] = [[] for _ in reqs]
    kept = 0
    t = time.perf_counter()
    for _ in range(cfg.max_tokens):
        prompts = [TokensPrompt(prompt_token_ids=r.student_ids + tr) for r, tr in zip(reqs, traces)]
        prompts += [TokensPrompt(prompt_token_ids=r.privileged_ids + tr) for r, tr in zip(reqs, traces)]
        outs = llm.generate(prompts, params, use_tqdm=False)
        for i, tr in enumerate(traces):
            top_s = {t: math.exp(lp.logprob) for t, lp in outs[i].outputs[0].logprobs[0].items() if t not in eos}
            top_p = {t: math.exp(lp.logprob) for t, lp in outs[len(reqs) + i].outputs[0].logprobs[0].items()}
            top_p = {t: p for t, p in top_p.items() if t not in eos}
            token = None
            for _ in range(5):
                draw = rng.choices(list(top_s), weights=list(top_s.values()))[0]
                if top_p.get(draw, 0.0) >= cfg.tau:
                    token, kept = draw, kept + 1
                    break
            tr.append(token if token is not None else rng.choices(list(top_p), weights=list(top_p.values()))[0])
    dt = time.perf_counter() - t
    tokens = sum(len(tr) for tr in traces)
    return {"seconds": dt, "tokens": tokens, "tokens_per_s": tokens / dt, "acceptance": kept / tokens}


def calibrate(engine, reqs, target: float, cfg: RolloutConfig) -> float:
    """The tau whose acceptance on 16-token pilots is closest to `target` (bisection on log tau: a random
    model's probabilities sit near 1/vocab)."""
    lo, hi, best = math.log(1e-7), 0.0, (9.0, 0.5)
    for _ in range(12):
        tau = math.exp((lo + hi) / 2)
        acc = run(engine, reqs[:4], RolloutConfig(**{**cfg.__dict__, "tau": tau, "max_tokens": 16}))["acceptance"]
        best = min(best, (abs(acc - target), tau))
        lo, hi = (math.log(tau), hi) if acc > target else (lo, math.log(tau))
    return best[1]


def bench_model(name: str, args) -> list[dict]:
    import gc

    import torch
    from transformers import AutoConfig

    from dail_harness.backends.vllm import cpu_kv_cache_bytes
    from dail_harness.models.cpu import cpu_dtype
    from dail_harness.models.loading import eos_token_ids, load_causal_lm, load_tokenizer
    from dail_harness.rollout.hf import MixedPolicyEngine
    from dail_harness.rollout.vllm import VLLMMixedRollout
    from dail_harness.rollout.vllm_drafts import VLLMDraftedRollout

    path = model_path(name)
    vocab = int(AutoConfig.from_pretrained(path).vocab_size)
    tok = load_tokenizer(path)
    eos = eos_token_ids(tok, None)
    dtype = cpu_dtype()[0]
    # room for every row of the largest run (two per trace, ~1,100 tokens each): no preemption anywhere
    one_sequence = cpu_kv_cache_bytes(path, MAX_MODEL_LEN, dtype) // 4
    kv = one_sequence * math.ceil(2 * max(args.pairs) * 1100 / MAX_MODEL_LEN)
    pairs_list = sorted(args.pairs)
    requests = {p: make_requests(p, vocab, 128, 512) for p in pairs_list}
    rows: list[dict] = []

    def record(pairs: int, config: str, new_tokens: int, r: dict, base: float | None) -> None:
        row = {"model": name, "pairs": pairs, "config": config, "new_tokens": new_tokens, **r}
        row["vs_plain"] = r["tokens_per_s"] / base if base else None
        rows.append(row)
        acc = f"{r['acceptance']:.2f}" if r["acceptance"] is not None else "    "
        vs = f"{row['vs_plain']:.3f}x plain" if base else ""
        print(
            f"{name:14} pairs {pairs:3}  {config:28} {new_tokens:4} tok  acc {acc}  "
            f"{r['tokens_per_s']:9.1f} tok/s  {vs}",
            flush=True,
        )

    llm = engine(path, mixed=False, kv_bytes=kv)
    plain(llm, requests[min(pairs_list)][:1], 4, eos)  # warm-up
    base = {p: plain(llm, requests[p], args.new_tokens, eos) for p in pairs_list}
    for p in pairs_list:
        record(p, "plain (llm.generate)", args.new_tokens, base[p], None)
    del llm
    gc.collect()

    llm = engine(path, mixed=True, kv_bytes=kv)
    paired = VLLMMixedRollout(llm, eos)
    cfg = RolloutConfig(
        tau=0.5,
        max_tokens=args.new_tokens,
        temperature=1.0,
        top_p=1.0,
        seed=0,
        batch_size=max(pairs_list),
        suppress_token_ids=list(eos),
    )
    cfg.tau = calibrate(paired, requests[max(pairs_list)], 0.5, cfg)
    print(f"{name}: tau {cfg.tau:.3g} for ~0.5 acceptance", flush=True)
    short = RolloutConfig(**{**cfg.__dict__, "max_tokens": args.short_tokens})
    for p in pairs_list:
        plain_rate = base[p]["tokens_per_s"]
        r = run(paired, requests[p], cfg)
        record(p, "in-engine pairs (default)", args.new_tokens, r, plain_rate)
        rate = r["tokens_per_s"]
        long_drafts = name == "tiny-random"
        c = cfg if long_drafts else short
        d = run(VLLMDraftedRollout(llm, eos), requests[p], RolloutConfig(**{**c.__dict__, "draft_tokens": 8}))
        record(p, "drafting K=8 (old default)", c.max_tokens, d, plain_rate)
        rows[-1]["in_engine_vs_this"] = rate / d["tokens_per_s"]
        a = authors(llm, requests[p], short, eos)
        record(p, "authors (request per token)", short.max_tokens, a, plain_rate)
        rows[-1]["in_engine_vs_this"] = rate / a["tokens_per_s"]
    del paired, llm
    gc.collect()

    torch.set_num_threads(args.threads)
    hf_engine = MixedPolicyEngine(load_causal_lm(path, device="cpu", dtype=dtype), tok, eos)
    for p in pairs_list:
        c = cfg if p == 1 or name == "tiny-random" else short
        h = run(hf_engine, requests[p], c)
        record(p, "hf engine (lockstep)", c.max_tokens, h, base[p]["tokens_per_s"])
        rows[-1]["in_engine_vs_this"] = (
            next(x["tokens_per_s"] for x in rows if x["pairs"] == p and x["config"].startswith("in-engine"))
            / h["tokens_per_s"]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny-random,qwen2.5-0.5b")
    ap.add_argument("--pairs", default="1,32", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--short-tokens", type=int, default=32, help="trace length of the slow baselines at many pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [row for name in args.models.split(",") for row in bench_model(name, args)]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
