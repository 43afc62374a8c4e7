"""vLLM on this CPU with the harness's defaults, against the hf back-end on the same model: engine start-up
and sampling tokens/s, for a real-size model built from its config (random weights, the real Qwen2.5
tokenizer of tiny-random-qwen).

    python benchmarks/vllm_cpu.py --preset qwen2.5-0.5b            # the defaults, --enforce-eager, fp32, hf
    python benchmarks/vllm_cpu.py --preset tiny --new-tokens 32     # smoke test

Each configuration runs in its own process (a clean start-up, and one engine's memory at a time). Start-up
is the back-end's construction (model load, KV-cache allocation and, unless eager, vLLM's compile and
warm-up); tokens/s is generated tokens over the wall time of one generate call of --prompts prompts with
--n samples each, after a one-token call (the first request's one-off costs are start-up, not decode).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks.hf_decode` without PYTHONPATH

CONFIGS = {
    "vllm": ("vllm", {}),
    "vllm-eager": ("vllm", {"enforce_eager": True}),
    "vllm-eager-fp32": ("vllm", {"enforce_eager": True, "dtype": "float32"}),
    "hf": ("hf", {"device": "cpu"}),
}


def build_model(preset: str, out: Path) -> Path:
    """The preset's shapes with random weights and tiny-random-qwen's tokenizer, saved for vLLM to load."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from benchmarks.hf_decode import PRESETS
    from dail_harness.models.loading import load_tokenizer, resolve_model

    if (out / "config.json").exists():
        return out
    tok = load_tokenizer(resolve_model("tiny-random-qwen"))
    # the tokenizer's own vocabulary: a random model would sample a padded vocabulary's unused ids
    shapes = {**PRESETS[preset], "vocab_size": len(tok)}
    config = Qwen2Config(**shapes, max_position_embeddings=32768, torch_dtype="bfloat16")
    config.eos_token_id, config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_one(name: str, model: str, prompts: int, n: int, new_tokens: int) -> dict:
    from dail_harness import registry
    from dail_harness.backends.base import GenerationRequest
    from dail_harness.models.cpu import cpu_dtype
    from dail_harness.sampling import SamplingParams

    backend_name, kwargs = CONFIGS[name]
    t0 = time.perf_counter()
    backend = registry.get("backends", backend_name)(model, **kwargs)
    startup = time.perf_counter() - t0
    requests = [
        GenerationRequest(f"b/{i}", f"Problem {i}: find the sum of the first {i + 10} odd numbers.", list(range(n)))
        for i in range(prompts)
    ]
    warm = SamplingParams(temperature=0.6, top_p=0.95, presence_penalty=0.0, max_tokens=1, seed=0)
    list(backend.generate(requests[:1], warm))
    params = SamplingParams(temperature=0.6, top_p=0.95, presence_penalty=0.0, max_tokens=new_tokens, seed=0)
    t0 = time.perf_counter()
    tokens = sum(c.num_tokens for batch in backend.generate(requests, params) for c in batch)
    elapsed = time.perf_counter() - t0
    dtype = kwargs.get("dtype") or (cpu_dtype()[0] if backend_name == "vllm" else "float32")
    return {
        "config": name,
        "dtype": dtype,
        "startup_s": round(startup, 1),
        "tokens": tokens,
        "decode_s": round(elapsed, 1),
        "tokens_per_s": round(tokens / elapsed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2.5-0.5b")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--model-dir", help="where to build the model (default: a temporary directory)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.model_dir, args.prompts, args.n, args.new_tokens)), flush=True)
        return
    root = Path(args.model_dir or tempfile.mkdtemp(prefix="dail-vllm-bench-"))
    model = build_model(args.preset, root / args.preset)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "PYTHONPATH": str(Path(__file__).parent.parent)}
    results = []
    for name in args.configs.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--model-dir", str(model), "--prompts", str(args.prompts)]
        cmd += ["--n", str(args.n), "--new-tokens", str(args.new_tokens)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        row = {"preset": args.preset, **json.loads(out.stdout.strip().splitlines()[-1])}
        results.append(row)
        print(
            f"{name:16} {row['dtype']:9} start-up {row['startup_s']:7.1f} s   "
            f"{row['tokens_per_s']:8.1f} tok/s ({row['tokens']} tokens in {row['decode_s']} s)",
            flush=True,
        )
    hf = next((r for r in results if r["config"] == "hf"), None)
    if hf:
        for r in results:
            print(f"{r['config']:16} {r['tokens_per_s'] / hf['tokens_per_s']:.2f}x hf's tokens/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
