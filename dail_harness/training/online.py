"""What methods that sample get from the engine: the live policy's sampler, the verifiers, the step.

`OnlineContext.sample` draws completions from the model being trained (adapter on) through a sampling
back-end: `hf` runs the PEFT model in memory, with keyed randomness per (seed, step, problem, sample),
so a resumed run draws exactly the samples the uninterrupted one drew. `grade` scores completions
with a verifier in the grading pool. Across processes (DDP) each process samples its share of the
prompts and `gather` combines per-process values (batch-level reward statistics, token counts).
"""

from __future__ import annotations

import time
from typing import Any

from dail_harness.backends.base import Completion, GenerationRequest
from dail_harness.eval.grading import GradeJob
from dail_harness.sampling import SamplingParams
from dail_harness.training.config import TrainConfig
from dail_harness.training.examples import Example, sampled_example
from dail_harness.verifiers.base import Verdict


class OnlineContext:
    def __init__(self, cfg: TrainConfig, backend, pool, accelerator=None):
        self.cfg, self.backend, self.pool, self.accelerator = cfg, backend, pool, accelerator
        self.tokenizer = backend.tokenizer
        self.step = 0
        self.sampled_tokens = 0
        self.sampling_seconds = 0.0
        self.grading_seconds = 0.0

    @property
    def world(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    def params(self, n: int, **overrides: Any) -> SamplingParams:
        """The run's sampling settings (`--temperature`, `--top-p`, `--top-k`, `--presence-penalty`,
        `--max-tokens`, `--seed`) for n samples."""
        return self.cfg.sampling_params(n, **overrides)

    def sample(
        self, prompts: dict[str, str], n: int, *, tag: str = "", **overrides: Any
    ) -> dict[str, list[Completion]]:
        """n completions for each (key -> user-turn prompt), from the live policy; keyed by this step."""
        requests = [
            GenerationRequest(f"{tag}step{self.step}/{key}", text, list(range(n))) for key, text in prompts.items()
        ]
        by_request: dict[str, list[Completion]] = {r.request_id: [] for r in requests}
        model = getattr(self.backend, "model", None)
        was_training = bool(getattr(model, "training", False))
        if model is not None:
            model.eval()
        start = time.perf_counter()
        try:
            for batch in self.backend.generate(requests, self.params(n, **overrides)):
                for c in batch:
                    by_request[c.request_id].append(c)
                    self.sampled_tokens += c.num_tokens
        finally:
            self.sampling_seconds += time.perf_counter() - start
            if model is not None and was_training:
                model.train()
        prefix = f"{tag}step{self.step}/"
        return {rid[len(prefix) :]: sorted(cs, key=lambda c: c.sample_index) for rid, cs in by_request.items()}

    def prompt_ids(self, prompt: str) -> list[int]:
        """The rendered prompt ids the back-end sampled from (chat template applied)."""
        return self.backend.render(GenerationRequest("", prompt))

    def grade(self, completions: list[Completion], golds: list[str], answer_types: list[str]) -> list[Verdict]:
        jobs = [GradeJob(c.text, g, t, c.finish_reason) for c, g, t in zip(completions, golds, answer_types)]
        start = time.perf_counter()
        try:
            return self.pool.grade(jobs)
        finally:
            self.grading_seconds += time.perf_counter() - start

    def gather(self, values: list[float]) -> list[float]:
        """Every process's values, concatenated in process order (one process: `values`)."""
        if self.world == 1:
            return list(values)
        from accelerate.utils import gather_object

        return [float(v) for v in gather_object(list(values))]

    def example(self, key: str, prompt_ids: list[int], completion: Completion, **extras: list[float]) -> Example:
        return sampled_example(
            f"step{self.step}/{key}#{completion.sample_index}", prompt_ids, completion.token_ids, extras
        )


def online_run(trainer, desc: str) -> dict:
    """The online loop: every generation batch, this process's share of the prompts is sampled from the live
    policy and the method turns the scored samples into examples; the batch serves `num_iterations` (mu)
    optimizer steps, with the policy's log-probabilities at sampling time stored for the ratio when mu > 1.
    Returns the optimizer steps, passes over the prompts, last log row and examples made."""
    from dail_harness.errors import HarnessError
    from dail_harness.eval.grading import GradingPool
    from dail_harness.training.plan import StepBatch, micro_batches, plan_steps

    cfg, method = trainer.cfg, trainer.method
    rows = method.load_rows(cfg.data)
    per_step = method.options.prompts_per_step
    mu = int(getattr(method.options, "num_iterations", 1))
    if per_step < trainer.world:
        raise HarnessError(f"--prompts-per-step {per_step} is smaller than the {trainer.world} processes")
    # --max-steps counts optimizer steps: enough generation batches for them, each serving mu steps
    generations = plan_steps(
        len(rows),
        epochs=int(cfg.epochs or 1),
        seed=cfg.seed,
        batch_size=per_step,
        per_step=1,
        max_steps=-(-cfg.max_steps // mu) if cfg.max_steps else None,
        drop_last=cfg.drop_last,
    )
    total = cfg.max_steps or len(generations) * mu
    trainer.build(total)
    backend = trainer.sampler()
    made = 0
    cache: dict[int, StepBatch] = {}
    with GradingPool(cfg.grade_workers) as pool:
        ctx = OnlineContext(cfg, backend, pool, trainer.accelerator)

        def step_batch(step: int) -> StepBatch:
            nonlocal made
            g, iteration = divmod(step, mu)
            if g not in cache:
                cache.clear()
                epoch, (prompts,) = generations[g]
                ctx.step = g
                sampled, seconds, grading = ctx.sampled_tokens, ctx.sampling_seconds, ctx.grading_seconds
                rollout = method.rollout(ctx, [rows[i] for i in prompts[trainer.rank :: trainer.world]])
                if mu > 1:  # the ratio's denominator: the policy that sampled the batch
                    for example, logps in zip(rollout.examples, trainer.token_logps(rollout.examples)):
                        example.extras["old_logp"] = logps
                made += len(rollout.examples)
                mine = micro_batches(rollout.examples, cfg.batch_size)
                total_micro = int(sum(ctx.gather([float(len(mine))])))
                spent = ctx.sampling_seconds - seconds
                stats = {
                    "epoch": epoch,
                    **rollout.stats,
                    "sampling_tokens_per_s": (ctx.sampled_tokens - sampled) / max(spent, 1e-9),
                    "sampling_seconds": spent,
                    "reward_seconds": ctx.grading_seconds - grading,
                }
                cache[g] = StepBatch(mine, max(total_micro, 1), stats=stats)
            batch = cache[g]
            return StepBatch(
                batch.micro_batches,
                batch.total_micro_batches,
                stats={**batch.stats, "generation": g, "iteration": iteration},
            )

        last = trainer.run(total, step_batch, desc, align=mu)
    return {"steps": total, "epochs": generations[-1][0] + 1, "last": last, "examples": made}
