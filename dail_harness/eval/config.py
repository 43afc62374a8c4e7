"""The settings of an evaluation run: which problems (TaskSelection), how to sample (Sampling), and the
rest of `dail-harness eval` (EvalConfig). The CLI's flags are these fields; their defaults are the
paper's evaluation protocol (REFERENCE.md, "Evaluation")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.eval.grading import DEFAULT_TIMEOUT_S
from dail_harness.eval.metrics import parse_k, power_of_two_grid
from dail_harness.eval.thinking import DEFAULT_ANSWER_TOKENS
from dail_harness.options import on_off, option, parse_shard
from dail_harness.sampling import SamplingParams

SAMPLING, TASK, THINKING, ENGINE, RUN = "Sampling", "Task", "Thinking models", "Back-end", "Run"


@dataclass(kw_only=True)
class TaskSelection:
    """Which problems: task names (or a data file), their options, and a subset."""

    task: list[str] = option(help="Task name(s), comma-separated (e.g. aime24,aime25; several are also reported "
                                  "as one combined set), or a data file (the `file` task).", panel=TASK)
    limit: int | None = option(None, ge=1, help="Only the first L problems of each task.", panel=TASK)
    data: str | None = option(None, help="Data file for the `file` task or gpqa-diamond.", panel=TASK)
    fields: str | None = option(None, help="Field map for --data, e.g. problem=question,answer=final.", panel=TASK)
    answer_type: str | None = option(None, help="Verifier for --data: integer, math, choice or a plugin's.",
                                     panel=TASK)
    prompt_template: str | None = option(None, help="File with a prompt template containing {problem}.",
                                         panel=TASK)
    task_opt: dict[str, str] = option(default_factory=dict, help="Extra task option KEY=VALUE (repeatable), e.g. "
                                      "shuffle_seed=1 for GPQA.", panel=TASK)
    plugin_dir: list[str] = option(default_factory=list, repeat=True, help="Directory of extra plugin modules "
                                   "(*.py) to load (repeatable).", panel=RUN)

    def task_options(self) -> dict:
        options: dict = dict(self.task_opt)
        for key in ("data", "fields", "answer_type"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.prompt_template is not None:
            path = Path(self.prompt_template)
            if not path.exists():
                raise HarnessError("prompt template file not found", path=str(path))
            text = path.read_text(encoding="utf-8")
            if "{problem}" not in text:
                raise HarnessError("prompt template has no {problem} placeholder", path=str(path))
            options["prompt_template"] = text
        return options


@dataclass(kw_only=True)
class Sampling:
    """How many samples per problem, at which k, with which decoding settings (the paper's by default)."""

    n: int | None = option(None, ge=1, help="Samples per problem (default: the largest k).", panel=SAMPLING)
    k: str | None = option(None, help="'128': pass@k at 1,2,4,...,128 (and n = 128); '1,8,64': exactly those k.",
                           panel=SAMPLING)
    temperature: float = option(0.6, ge=0, help="Sampling temperature; 0 means greedy decoding.", panel=SAMPLING)
    top_p: float = option(0.95, gt=0, le=1, help="Nucleus sampling mass.", panel=SAMPLING)
    presence_penalty: float = option(1.5, ge=-2, le=2, help="Subtracted once from every token already in the "
                                     "output (vLLM semantics; the paper used 1.5).", panel=SAMPLING)
    max_tokens: int = option(8000, ge=1, help="Maximum new tokens per sample.", panel=SAMPLING)
    stop: list[str] = option(default_factory=list, repeat=True, help="Stop string (repeatable); the completion "
                             "ends before it.", panel=SAMPLING)
    seed: int = option(0, help="Base seed; samples are keyed by (seed, problem, sample index).", panel=SAMPLING)

    def check(self) -> None:
        self.ks  # noqa: B018 (parses --k and compares it with --n)

    @property
    def ks(self) -> list[int]:
        return self._k_and_n()[0]

    @property
    def num_samples(self) -> int:
        return self._k_and_n()[1]

    def _k_and_n(self) -> tuple[list[int], int]:
        if self.k is not None:
            ks, n = parse_k(self.k)
        elif self.n is not None:
            ks, n = power_of_two_grid(self.n), self.n
        else:
            ks, n = [1], 1
        n = self.n if self.n is not None else n
        if max(ks) > n:
            raise HarnessError(f"--k {max(ks)} is larger than --n {n}; pass@k needs k <= n")
        return ks, n

    def params(self, temperature: float | None = None) -> SamplingParams:
        return SamplingParams(n=self.num_samples, temperature=self.temperature if temperature is None else temperature,
                              top_p=self.top_p, presence_penalty=self.presence_penalty, max_tokens=self.max_tokens,
                              stop=list(self.stop), seed=self.seed)


@dataclass(kw_only=True)
class EvalConfig(TaskSelection, Sampling):
    """Everything one `dail-harness eval` needs (the CLI's flags are these fields)."""

    model: str = option(help="Local model or LoRA adapter directory, hub id, or 'tiny-random'.", panel=RUN)
    out: str = option(help="Run directory; rerunning the same command resumes.", panel=RUN)
    backend: str = option("hf", help="Sampling back-end (`dail-harness list backends`).", panel=ENGINE)
    temperatures: list[float] | None = option(None, ge=0, help="Temperature sweep, e.g. 0.6,0.8,1.0,1.2 (one "
                                              "condition each).", panel=SAMPLING)
    shard: tuple[int, int] | None = option(None, parse=parse_shard, metavar="i/N",
                                           help="Only problems with index % N == i (report merges shards).", panel=TASK)
    system_prompt: str | None = option(None, help="System prompt (default: the chat template's own).", panel=TASK)
    thinking: bool = option(False, parse=on_off, flag="--thinking", metavar="on|off",
                            help="on: thinking model (enable_thinking, </think> phases); off: plain.", panel=THINKING)
    budgets: list[int] | None = option(None, ge=1, help="Thinking budgets for budget forcing, e.g. "
                                       "512,1024,2048,4096 (implies --thinking on).", panel=THINKING)
    answer_tokens: int = option(DEFAULT_ANSWER_TOKENS, ge=1, help="Answer tokens after the thinking phase.",
                                panel=THINKING)
    budget_mode: str = option("shared", choices=("shared", "independent"), help="shared: branch the answers from "
                              "one trace per sample; independent: sample each budget from scratch.", panel=THINKING)
    batch_size: int | None = option(None, ge=1, help="Rows per generate call (hf; default 8 CPU, 32 GPU).",
                                    panel=ENGINE)
    tensor_parallel_size: int = option(1, ge=1, help="GPUs per vLLM engine (vllm).", panel=ENGINE)
    gpu_memory_utilization: float | None = option(None, gt=0, le=1, help="vLLM KV-cache memory share (default "
                                                  "0.9 GPU, 0.3 CPU).", panel=ENGINE)
    max_model_len: int | None = option(None, ge=1, help="vLLM context length (default: the model's).", panel=ENGINE)
    device: str | None = option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available).", panel=ENGINE)
    dtype: str | None = option(None, help="float32, bfloat16 ... (default: bf16 on GPU, fp32 on CPU).", panel=ENGINE)
    grade_workers: int | None = option(None, ge=0, help="Grading processes (0: in-process; default min(4, cores)).",
                                       panel="Grading")
    grade_timeout: float = option(DEFAULT_TIMEOUT_S, gt=0, help="Seconds per sample before grading gives up.",
                                  panel="Grading")
    progress: bool = option(True, help="Show a progress bar.", panel=RUN)

    def check(self) -> None:
        """Cross-field checks (single values were checked against their ranges already)."""
        super().check()
        if self.budgets:
            self.thinking = True

    def conditions(self) -> list[tuple[float, int | None]]:
        temps = self.temperatures or [self.temperature]
        return [(t, b) for t in temps for b in (self.budgets or [None])]

    def backend_options(self) -> dict:
        options = {key: getattr(self, key) for key in ("batch_size", "device", "dtype", "system_prompt",
                                                       "max_model_len", "gpu_memory_utilization")
                   if getattr(self, key) is not None}
        if self.tensor_parallel_size != 1:
            options["tensor_parallel_size"] = self.tensor_parallel_size
        return options
