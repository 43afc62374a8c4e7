"""What methods that sample get from the engine: the live policy's sampler, the verifiers, the step.

`OnlineContext.sample` draws completions from the model being trained (adapter on) through a sampling
back-end: `hf` runs the PEFT model in memory, with keyed randomness per (seed, step, problem, sample),
so a resumed run draws exactly the samples the uninterrupted one drew. `grade` scores completions
with a verifier in the grading pool. Across processes (DDP) each process samples its share of the
prompts and `gather` combines per-process values (batch-level reward statistics, token counts).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from dail_harness.backends.base import Completion, GenerationRequest
from dail_harness.errors import HarnessError
from dail_harness.eval.grading import GradeJob, GradingPool
from dail_harness.sampling import SamplingParams
from dail_harness.training.config import TrainConfig
from dail_harness.training.examples import Example, sampled_example
from dail_harness.training.plan import StepBatch, StepSource, epochs_covered, micro_batches, plan_steps
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


def check_prompts_per_step(per_step: int, rows: int, world: int, data: str) -> None:
    """A step's prompts must be at most the problems there are (a larger one silently took fewer) and at least one
    per process."""
    if per_step < world:
        raise HarnessError(f"--prompts-per-step {per_step} is smaller than the {world} processes")
    if per_step > rows:
        raise HarnessError(
            f"--prompts-per-step {per_step} is more than the {rows} problems: a step would take {rows}; lower it",
            path=data,
        )


class OnlineSource(StepSource):
    """The online loop's steps: every generation batch, this process's share of the prompts is sampled from the
    live policy and the method turns the scored samples into examples; the batch serves `num_iterations` (mu)
    optimizer steps, with the policy's log-probabilities at sampling time stored for the ratio when mu > 1."""

    def __init__(self, method: Any) -> None:  # a recipes.OnlineMethod (recipes imports this module)
        self.method = method
        self.align = int(getattr(method.options, "num_iterations", 1))  # mu: checkpoints at a batch's start
        self.made = 0
        self.cache: dict[int, StepBatch] = {}

    def plan(self, trainer: Any) -> int:
        cfg, mu, per_step = trainer.cfg, self.align, self.method.options.prompts_per_step
        self.trainer, self.rows = trainer, self.method.load_rows(cfg.data)
        check_prompts_per_step(per_step, len(self.rows), trainer.world, cfg.data)
        # --max-steps counts optimizer steps: enough generation batches for them, each serving mu steps
        self.generations = plan_steps(
            len(self.rows),
            epochs=int(cfg.epochs or 1),
            seed=cfg.seed,
            batch_size=per_step,
            per_step=1,
            max_steps=-(-cfg.max_steps // mu) if cfg.max_steps else None,
            drop_last=cfg.drop_last,
        )
        return cfg.max_steps or len(self.generations) * mu

    @contextlib.contextmanager
    def open(self, trainer: Any) -> Iterator[None]:
        """The live policy's sampler and the grading pool, for the steps of this run."""
        with GradingPool(trainer.cfg.grade_workers) as pool:
            self.ctx = OnlineContext(trainer.cfg, trainer.sampler(), pool, trainer.accelerator)
            yield

    def batch(self, step: int) -> StepBatch:
        g, iteration = divmod(step, self.align)
        if g not in self.cache:
            self.cache.clear()
            self.cache[g] = self.rollout(g)
        batch = self.cache[g]
        return StepBatch(
            batch.micro_batches,
            batch.total_micro_batches,
            stats={**batch.stats, "generation": g, "iteration": iteration},
        )

    def rollout(self, g: int) -> StepBatch:
        """Generation batch g: sample, score, weigh (and, with mu > 1, store the sampling policy's log-probs)."""
        ctx, trainer = self.ctx, self.trainer
        epoch, (prompts,) = self.generations[g]
        ctx.step = g
        sampled, seconds, grading = ctx.sampled_tokens, ctx.sampling_seconds, ctx.grading_seconds
        # --fsdp: every process samples (and scores its own samples) from the whole weights, with no collectives
        with trainer.whole_policy():
            rollout = self.method.rollout(ctx, [self.rows[i] for i in prompts[trainer.rank :: trainer.world]])
            if self.align > 1:  # the ratio's denominator: the policy that sampled the batch
                for example, logps in zip(rollout.examples, trainer.token_logps(rollout.examples)):
                    example.extras["old_logp"] = logps
        self.made += len(rollout.examples)
        mine = micro_batches(rollout.examples, trainer.cfg.batch_size)
        total_micro = int(sum(ctx.gather([float(len(mine))])))
        spent = ctx.sampling_seconds - seconds
        stats = {
            "epoch": epoch,
            **rollout.stats,
            "sampling_tokens_per_s": (ctx.sampled_tokens - sampled) / max(spent, 1e-9),
            "sampling_seconds": spent,
            "reward_seconds": ctx.grading_seconds - grading,
        }
        return StepBatch(mine, max(total_micro, 1), stats=stats)

    def result(self) -> dict:
        return {"epochs": epochs_covered(self.generations, len(self.rows)), "examples": self.made}
