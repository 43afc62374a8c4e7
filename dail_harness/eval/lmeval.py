"""Bridge to lm-eval (EleutherAI lm-evaluation-harness), both ways.

1. `export_tasks`: writes our tasks as an lm-eval task directory (use it with `--include_path`): one
   YAML + one JSONL per task, and a `dail_utils.py` whose `process_results` grades with our verifiers
   and returns unbiased pass@k per problem. lm-eval passes only the first of `repeats` samples to a
   metric unless a `take_first_k` filter keeps all n, so the YAML sets one. Prompts are our rendered
   prompts; pass `--apply_chat_template` to lm-eval so the model's chat template wraps them as ours does.
2. `run_lm_eval`: runs lm-eval's `hf` model on any model, trained adapter or `tiny-random`, for any
   lm-eval task (e.g. gsm8k to check that training caused no regression elsewhere) or our exported ones.

lm-eval's own benchmark tasks download their data from the hub; offline, use exported tasks.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from dail_harness.errors import HarnessError, did_you_mean
from dail_harness.eval.task import Task
from dail_harness.files import atomic_write_jsonl, atomic_write_text
from dail_harness.records import Problem

UTILS = '''\
"""Written by `dail-harness lm-eval-export`: grade with dail-harness verifiers, report pass@k."""
from dail_harness.eval.grading import GradeJob, grade_one
from dail_harness.eval.metrics import pass_at_k

KS = {ks}


def process_results(doc, results):
    responses = results[0] if results and isinstance(results[0], (list, tuple)) else list(results)
    correct = [grade_one(GradeJob(r, doc["answer"], doc["answer_type"])).correct for r in responses]
    n, c = len(correct), sum(correct)
    return {{f"pass@{{k}}": float(pass_at_k(n, c, k)) for k in KS if k <= n}}
'''


def lm_eval_task_name(task: str) -> str:
    return "dail_" + task.replace("-", "_")


def generation_kwargs(
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    presence_penalty: float,
    stop: list[str],
    max_tokens: int,
    lm_eval_model: str,
) -> dict:
    """Our sampling settings as lm-eval's `generation_kwargs` for its `hf` or `vllm` model. A setting that model
    cannot apply is refused, never dropped: a cross-check at other settings than ours would compare nothing."""
    # repetition_penalty and top_k always: lm-eval's hf model passes these kwargs to `generate`, which fills what is
    # missing from the model's generation_config (transformers' top_k 50; Qwen2.5's repetition penalty 1.05)
    gen: dict = {"until": list(stop), "do_sample": temperature > 0, "max_gen_toks": max_tokens}
    gen["repetition_penalty"] = 1.0
    if temperature > 0:  # greedy ignores them, in our eval as in lm-eval
        gen.update(temperature=temperature, top_p=top_p, top_k=top_k)  # top_k 0: off, in transformers and vLLM
    if presence_penalty:
        if lm_eval_model != "vllm":
            raise HarnessError(
                f"--presence-penalty {presence_penalty:g}: lm-eval's {lm_eval_model} model cannot apply a presence "
                "penalty (transformers' generate has none); export with --presence-penalty 0 and evaluate ours "
                "with it too, or export for --lm-eval-model vllm"
            )
        gen["presence_penalty"] = presence_penalty
    return gen


def export_tasks(
    loaded: list[tuple[Task, list[Problem]]],
    out: str | Path,
    *,
    n: int,
    ks: list[int],
    gen: dict,
) -> list[str]:
    """Write an lm-eval task directory for the selected problems (`pipeline.load_tasks`: --limit, --exclude and
    task options as `eval` applies them) with `gen` (`generation_kwargs`); returns the lm-eval task names."""
    ks = sorted(k for k in ks if k <= n)
    if not ks:
        raise HarnessError(f"no k <= n={n} to report")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "dail_utils.py", UTILS.format(ks=ks))
    names = []
    for task, problems in loaded:
        lm_name = lm_eval_task_name(task.name)
        data = out / f"{lm_name}.jsonl"
        atomic_write_jsonl(
            data,
            [
                {"id": p.id, "prompt": task.render_prompt(p), "answer": p.answer, "answer_type": p.answer_type}
                for p in problems
            ],
        )
        atomic_write_text(out / f"{lm_name}.yaml", _task_yaml(task.name, lm_name, data, n, ks, gen))
        names.append(lm_name)
    return names


def _task_yaml(name: str, lm_name: str, data: Path, n: int, ks: list[int], gen: dict) -> str:
    """The lm-eval task file: our prompts and answers from `data`, n repeats, pass@k by our grader."""
    return (
        textwrap.dedent(f"""\
            # Written by `dail-harness lm-eval-export` from the dail-harness task '{name}'.
            task: {lm_name}
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: {json.dumps(str(data.resolve()))}
            test_split: test
            output_type: generate_until
            doc_to_text: "{{{{prompt}}}}"
            doc_to_target: "{{{{answer}}}}"
            process_results: !function dail_utils.process_results
            repeats: {n}
            generation_kwargs: {json.dumps(gen)}
            filter_list:
              - name: all_samples
                filter:
                  - function: take_first_k
                    k: {n}
            metric_list:
            """)
        + "".join(f"  - metric: pass@{k}\n    aggregation: mean\n    higher_is_better: true\n" for k in ks)
        + "metadata:\n  version: 1.0\n"
    )


def run_lm_eval(
    model: str,
    tasks: list[str],
    *,
    include_path: str | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    apply_chat_template: bool = True,
    device: str | None = None,
    log_samples: bool = False,
    gen_kwargs: str | None = None,
    seed: int | None = None,
) -> dict:
    """Run lm-eval's `hf` model on `model` (path, adapter directory or `tiny-random`)."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise HarnessError("lm-eval is not installed: pip install -e '.[lm-eval]'") from None
    from dail_harness.models.loading import adapter_base, default_device, resolve_model

    path = resolve_model(model)
    base = adapter_base(path)
    device = device or default_device()
    model_args = {
        "pretrained": resolve_model(base) if base else path,
        "device": device,
        "dtype": "bfloat16" if device.startswith("cuda") else "float32",
    }
    if base:
        model_args["peft"] = path
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        hints = {t: did_you_mean(t, manager.all_tasks) for t in unknown}
        raise HarnessError(
            "unknown lm-eval task(s): " + ", ".join(f"'{t}'" + (f" ({hints[t]})" if hints[t] else "") for t in unknown)
        )
    results = simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        batch_size=batch_size,
        apply_chat_template=apply_chat_template,
        log_samples=log_samples,
        gen_kwargs=gen_kwargs,
        **({} if seed is None else dict(random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed)),
    )
    return results
