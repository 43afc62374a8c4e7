"""Decode throughput of the `hf` back-end on a real-size model built from its config (random weights).

    PYTHONPATH=. python benchmarks/hf_decode.py --preset qwen2.5-7b --batches 1,16,64   # on a GPU
    python benchmarks/hf_decode.py --preset tiny --batches 1,4 --device cpu            # smoke test

Per-step decode time is measured as the difference between two generate calls of different lengths
(so prefill and set-up cancel), for the eager path and the static-cache + compiled path. The
memory-bandwidth bound of one decode step is (weight bytes) / (measured device copy bandwidth,
bytes read + written); the script prints tokens/s and the fraction of that bound reached.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

PRESETS = {
    # Qwen2.5-7B-Instruct's shapes
    "qwen2.5-7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "tiny": dict(  # head_dim 32: the smallest vLLM's CPU attention supports
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=512,
        tie_word_embeddings=True,
    ),
}


def copy_bandwidth(device: str, nbytes: int = 2 << 30) -> float:
    """Bytes moved (read + written) per second by a large device-to-device copy."""
    if not device.startswith("cuda"):
        nbytes = 256 << 20
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).uniform_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    reps, t = 10, time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    return 2 * nbytes * reps / (time.perf_counter() - t)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build(preset: str, device: str, dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dail_harness.models.loading import load_tokenizer
    from dail_harness.models.tiny_random import ensure_tiny_random

    config = Qwen2Config(**PRESETS[preset], max_position_embeddings=32768, torch_dtype=str(dtype).split(".")[-1])
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.eval()
    tok = load_tokenizer(str(ensure_tiny_random()))  # only pad/eos ids are used; decoding is not timed
    return model, tok


def time_generate(backend, batch: int, new_tokens: int, prompt_len: int, vocab: int) -> float:
    from dail_harness.sampling import SamplingParams

    params = SamplingParams(temperature=0.6, top_p=0.95, presence_penalty=0.0, max_tokens=new_tokens, seed=0)
    cfg = backend._generation_config(params)
    cfg.eos_token_id = None  # run every row to max_tokens
    cfg.min_new_tokens = new_tokens
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(10, min(vocab, 500), (batch, prompt_len), generator=g).tolist()
    sync(backend.device)
    t = time.perf_counter()
    backend.decode_ids(ids, list(range(batch)), params, cfg)
    sync(backend.device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2.5-7b", choices=sorted(PRESETS))
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--short", type=int, default=32, help="new tokens of the short run")
    ap.add_argument("--long", type=int, default=160, help="new tokens of the long run")
    ap.add_argument("--modes", default="eager,static", help="eager and/or static (static cache + compile)")
    ap.add_argument("--json", help="also write results here")
    args = ap.parse_args()

    from dail_harness.backends.hf import HFBackend

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model, tok = build(args.preset, args.device, dtype)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bw = copy_bandwidth(args.device)
    bound_s = weight_bytes / bw
    print(
        f"preset {args.preset}: {weight_bytes / 1e9:.2f} GB of weights; copy bandwidth {bw / 1e12:.2f} TB/s; "
        f"bound {bound_s * 1e3:.2f} ms/step"
    )
    results = []
    for mode in args.modes.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            backend = HFBackend((model, tok), device=args.device, batch_size=batch, static_cache=(mode == "static"))
            time_generate(backend, batch, args.short, args.prompt_len, model.config.vocab_size)  # warm-up/compile
            t_short = time_generate(backend, batch, args.short, args.prompt_len, model.config.vocab_size)
            t_long = time_generate(backend, batch, args.long, args.prompt_len, model.config.vocab_size)
            step = (t_long - t_short) / (args.long - args.short)
            row = {
                "preset": args.preset,
                "device": args.device,
                "mode": mode,
                "batch": batch,
                "step_ms": step * 1e3,
                "tokens_per_s": batch / step,
                "bound_ms": bound_s * 1e3,
                "fraction_of_bound": bound_s / step,
            }
            results.append(row)
            print(
                f"{mode:7} batch {batch:3}: {step * 1e3:8.2f} ms/step  {batch / step:9.1f} tok/s  "
                f"{100 * bound_s / step:5.1f}% of the bandwidth bound"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
