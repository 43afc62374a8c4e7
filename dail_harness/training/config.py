"""The settings of one `dail-harness train` run: the engine's (this dataclass) plus the chosen method's
and loss's own options (their `Options` dataclasses), which the CLI offers as flags too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dail_harness.eval.pipeline import Sampling
from dail_harness.models.cpu import threads_option
from dail_harness.options import PATH, PATH_OR_NAME, as_settings, default_of, on_off, option
from dail_harness.sampling import SAMPLING_SETTINGS, SamplingSettings, sampling_option
from dail_harness.training.losses import DEFAULT_CHUNK

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RUN, OPTIM, LORA, DATA, SAMPLE = "Run", "Optimisation", "LoRA", "Data", "Sampling (methods that sample)"
EVAL = "Evaluation during training"
EVAL_OPTIONS = (
    "eval_every",
    "eval_n",
    "eval_limit",
    "eval_max_tokens",
    "eval_temperature",
    "eval_top_p",
    "eval_top_k",
    "eval_presence_penalty",
    "eval_seed",
)


def _eval_default(name: str):
    """The `eval` command's default of a sampling setting: evaluation during training uses the same protocol."""
    return default_of(Sampling.__dataclass_fields__[name])


@dataclass(kw_only=True)
class TrainConfig(SamplingSettings):
    """Settings of one `dail-harness train` run (defaults: DESIGN.md / the paper)."""

    SECTIONS: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "method": "*",  # method: {name: grpo, group_size: 8}
        "loss": "*",  # loss: {name: dail, gamma: 0.1}
        "sampling": SAMPLING_SETTINGS
        + ("backend", "vllm_memory", "tensor_parallel_size", "enforce_eager", "sample_batch_size"),
        "eval": "eval_",  # eval: {task: aime24, every: 50, n: 16}
        "lora": "lora_",  # lora: {r: 32, alpha: 32}
    }
    """Sections a --config file may use instead of flat keys (both work; a setting given twice is an error)."""

    method: str = option(help="dail, nll, sft, ... (`dail-harness list methods`).", panel=RUN)
    model: str = option(path=PATH_OR_NAME, help="The student: model directory, hub id or 'tiny-random'.", panel=RUN)
    data: str = option(
        path=PATH,
        help="Training data: D_syn JSONL (dail, nll), expert data (sft), or problems with answers "
        "(methods that sample).",
        panel=DATA,
    )
    out: str = option(
        path=PATH, help="Run directory: adapter, checkpoints, train_log.jsonl; rerunning resumes.", panel=RUN
    )
    loss: str | None = option(None, help="Override the method's loss (`dail-harness list losses`).", panel=RUN)
    loss_opt: dict[str, str] = option(
        default_factory=dict,
        help="Loss option KEY=VALUE (repeatable), for losses whose options have no flag (plugins).",
        panel=RUN,
    )
    method_opt: dict[str, str] = option(
        default_factory=dict,
        help="Method option KEY=VALUE (repeatable), for methods whose options have no flag (plugins).",
        panel=RUN,
    )
    lora_r: int = option(
        32,
        ge=0,
        help="LoRA rank; 0 trains all weights (full fine-tuning; a frozen copy serves the reference contexts).",
        panel=LORA,
    )
    lora_alpha: int = option(32, ge=1, help="LoRA alpha.", panel=LORA)
    lora_dropout: float = option(0.0, ge=0, lt=1, help="LoRA dropout.", panel=LORA)
    lora_targets: list[str] = option(
        default_factory=lambda: list(LORA_TARGETS), help="Modules that get LoRA adapters.", panel=LORA
    )
    lr: float = option(2e-4, gt=0, help="Peak learning rate.", panel=OPTIM)
    warmup_steps: int = option(5, ge=0, help="Steps of linear warm-up (the authors' code: 5).", panel=OPTIM)
    warmup_ratio: float | None = option(
        None, ge=0, le=1, help="Warm up for this share of the steps instead of --warmup-steps.", panel=OPTIM
    )
    warmup_clamp: bool = option(
        True,
        flag="--warmup-clamp/--no-warmup-clamp",
        help="A linear or cosine run shorter than --warmup-steps warms up over its own steps (5 warm-up steps, a "
        "2-step run: rates 0 and 0.5 x --lr). --no-warmup-clamp: transformers' schedule as the authors' code runs "
        "it (rates 0 and 0.2 x --lr). The two differ only on runs shorter than the warm-up.",
        panel=OPTIM,
    )
    lr_schedule: str = option(
        "linear",
        choices=("linear", "constant", "cosine"),
        help="After warm-up: linear decay to 0 at the last step (the authors' code; TRL's default), constant "
        "(verl's default; an extended run then equals a fresh longer one), or cosine decay to 0 (transformers' "
        "get_cosine_schedule_with_warmup).",
        panel=OPTIM,
    )
    weight_decay: float = option(0.01, ge=0, help="AdamW weight decay (the authors' code: 0.01).", panel=OPTIM)
    optimizer: str = option(
        "adamw",
        choices=("adamw", "paged_adamw_8bit"),
        help="adamw (torch), or bitsandbytes' paged 8-bit AdamW (the authors' code; needs bitsandbytes and a GPU).",
        panel=OPTIM,
    )
    max_grad_norm: float = option(1.0, gt=0, help="Gradient clipping norm.", panel=OPTIM)
    epochs: int | None = option(
        None, ge=1, help="Passes over the data (default: the authors' 5, or 3 with --thinking on).", panel=OPTIM
    )
    max_steps: int | None = option(
        None,
        ge=1,
        help="Optimizer steps to run; overrides --epochs (passes over the data as often as it takes, as Hugging "
        "Face Trainer does). Rerun into the same --out with a larger --max-steps (or --epochs) to extend a run: "
        "it equals a fresh longer run only with --lr-schedule constant (linear and cosine decay depend on the total).",
        panel=OPTIM,
    )
    batch_size: int = option(1, ge=1, help="Sequences per micro-batch (per device).", panel=OPTIM)
    grad_accum: int = option(4, ge=1, help="Micro-batches per optimizer step (offline methods).", panel=OPTIM)
    drop_last: bool = option(
        False,
        help="Drop the last step of each epoch when it holds fewer examples (offline) or prompts (online) than a "
        "full step, as PyTorch's DataLoader(drop_last=True) and verl's training data loader do.",
        panel=OPTIM,
    )
    max_length: int | None = option(
        None,
        ge=2,
        help="Longest student or privileged sequence (default: the authors' 12288, or 2048 with --thinking on).",
        panel=DATA,
    )
    overlong: str = option(
        "drop",
        choices=("drop", "truncate"),
        help="drop: leave out examples whose student or "
        "privileged sequence reaches --max-length (the authors' rule, counted); truncate: cut the "
        "response to fit.",
        panel=DATA,
    )
    loss_mask: str = option(
        "ours",
        choices=("ours", "authors"),
        help="ours: exactly the positions that predict "
        "response tokens; authors: their code's mask (skips the first two, adds the one after "
        "the last; KL losses only).",
        panel=DATA,
    )
    chunk_tokens: int = option(DEFAULT_CHUNK, ge=1, help="Positions per loss chunk (memory vs. speed).", panel=OPTIM)
    gradient_checkpointing: bool = option(True, help="Recompute activations in backward (less memory).", panel=OPTIM)
    fsdp: bool = option(
        False,
        help="Shard weights, gradients and optimizer state over the launch's processes (FSDP2, torch's fully_shard "
        "on each decoder layer), for training that does not fit one device (the weights alone must, for sampling); "
        "checkpoints are sharded, the final weights gathered. Needs torchrun or accelerate launch.",
        panel=OPTIM,
    )
    seed: int = option(0, help="Seed of the data order, LoRA initialisation and sampling.", panel=RUN)
    save_every: int = option(50, ge=1, help="Checkpoint every N optimizer steps.", panel=RUN)
    dry_run: bool = option(
        False,
        help="Print the plan (steps, what one step takes, every rank's device and sampling engine) and exit "
        "without loading a model.",
        panel=RUN,
    )
    thinking: bool = option(
        False,
        parse=on_off,
        flag="--thinking",
        metavar="on|off",
        help="on: thinking-model chat template (enable_thinking).",
        panel=DATA,
    )
    templates: str | None = option(
        None, path=PATH, content=True, help="JSON with student/privileged/negative templates.", panel=DATA
    )
    temperature: float = sampling_option(
        "temperature", 1.0, help="Sampling temperature of methods that sample.", panel=SAMPLE
    )
    top_p: float = sampling_option("top_p", 1.0, help="Nucleus sampling mass of methods that sample.", panel=SAMPLE)
    top_k: int = sampling_option(
        "top_k",
        0,
        help="Keep only the k most likely tokens (before top-p) in methods that sample; 0: all.",
        panel=SAMPLE,
    )
    presence_penalty: float = sampling_option(
        "presence_penalty",
        0.0,
        help="Presence penalty of methods that sample (vLLM semantics; 0: none, as TRL and verl sample).",
        panel=SAMPLE,
    )
    max_tokens: int = sampling_option(
        "max_tokens", 512, help="Maximum new tokens per sample of methods that sample.", panel=SAMPLE
    )
    backend: str = option(
        "auto",
        help="Sampling back-end of methods that sample and of --eval-task: hf (the live model), vllm (an engine in "
        "this process with the policy's weights or adapter), or auto (vllm for an online or generating method that "
        "samples at least 50,000 tokens where vLLM is installed and can serve the policy, else hf; printed).",
        panel=SAMPLE,
    )
    vllm_memory: float = option(
        0.3,
        gt=0,
        le=1,
        help="--backend vllm during training: the share of GPU memory vLLM may take next to the model being trained.",
        panel=SAMPLE,
    )
    tensor_parallel_size: int = option(
        1,
        ge=1,
        help="--backend vllm during training: GPUs per vLLM engine (single-process training; with DDP each process "
        "has its own engine).",
        panel=SAMPLE,
    )
    enforce_eager: bool = option(
        False,
        help="--backend vllm during training: skip vLLM's compilation and CUDA graphs (faster start, slower steps).",
        panel=SAMPLE,
    )
    sample_batch_size: int = option(
        64,
        ge=1,
        help="Sequences per generate call when sampling during training (hf; "
        "TRL samples a whole generation batch at once).",
        panel=SAMPLE,
    )
    grade_workers: int | None = option(None, ge=0, help="Grading processes for rewards (0: in-process).", panel=SAMPLE)
    init: str | None = option(
        None,
        path=PATH,
        help="Start from this LoRA run's adapter (e.g. NuRL from a LoRA GRPO run: --init runs/grpo-lora).",
        panel=RUN,
    )
    eval_task: list[str] | None = option(
        None,
        path=PATH_OR_NAME,
        help="Evaluate pass@k on these tasks during training (in OUT/evals/step-N; logged as eval/TASK/pass@k).",
        panel=EVAL,
    )
    eval_every: int | None = option(
        None,
        ge=1,
        help="Evaluate every N optimizer steps as well as at the end (default: at the end only).",
        panel=EVAL,
    )
    eval_n: int = option(4, ge=1, help="Samples per problem of the evaluations during training.", panel=EVAL)
    eval_limit: int | None = option(None, ge=1, help="Only the first L problems of each evaluation task.", panel=EVAL)
    eval_max_tokens: int | None = option(
        None, ge=1, help="Maximum new tokens of the evaluations (default: --max-tokens).", panel=EVAL
    )
    eval_temperature: float = sampling_option(
        "temperature",
        _eval_default("temperature"),
        help="Sampling temperature of the evaluations (as `eval`).",
        panel=EVAL,
    )
    eval_top_p: float = sampling_option(
        "top_p", _eval_default("top_p"), help="Nucleus sampling mass of the evaluations (as `eval`).", panel=EVAL
    )
    eval_top_k: int = sampling_option(
        "top_k", _eval_default("top_k"), help="Top-k of the evaluations (as `eval`; 0: all tokens).", panel=EVAL
    )
    eval_presence_penalty: float = sampling_option(
        "presence_penalty",
        _eval_default("presence_penalty"),
        help="Presence penalty of the evaluations (as `eval`: the paper's 1.5).",
        panel=EVAL,
    )
    eval_seed: int = sampling_option(
        "seed", _eval_default("seed"), help="Base seed of the evaluations' keyed samples (as `eval`).", panel=EVAL
    )
    merge: bool = option(False, help="Also write OUT/merged, a full model for transformers and vLLM.", panel=RUN)
    report_to: str | None = option(None, help="accelerate tracker: tensorboard, wandb, ...", panel=RUN)
    device: str | None = option(
        None,
        choices=("cpu",),
        help="cpu to force the CPU. GPUs are the launcher's: one per process (CUDA_VISIBLE_DEVICES picks which).",
        panel=RUN,
    )
    threads: int | None = threads_option(RUN)
    progress: bool = option(True, help="Show a progress bar.", panel=RUN)
    plugin_dir: list[str] = option(
        default_factory=list, repeat=True, path=PATH, help="Directory of extra plugin modules.", panel=RUN
    )

    def check(self) -> None:
        """The authors' settings per model type: 5 epochs and 12288 tokens, or 3 and 2048 for reasoning models."""
        if self.epochs is None:
            self.epochs = 3 if self.thinking else 5
        if self.max_length is None:
            self.max_length = 2048 if self.thinking else 12288

    @classmethod
    def never_used(cls, source: str, uses_templates: bool) -> set[str]:
        """The settings a method of this source ignores whatever the other settings (what its --help leaves out)."""
        runs = [cls(method="", model="", data="", out="", eval_task=["t"], backend=b) for b in ("hf", "vllm")]
        return set.intersection(*(set(run.unused(source, "", uses_templates)) for run in runs))

    def unused(self, source: str, sampling_methods: str, uses_templates: bool) -> dict[str, str]:
        """The options this run would ignore, each with who would use it: a method that does not sample ignores
        the sampling settings, a run without --eval-task the evaluation's, --backend hf the vLLM engine's, and so
        on. `source` is the method's (file, generate, online); `sampling_methods` names the methods that sample;
        `uses_templates`: whether the method's training prompts are the D_syn templates (--templates)."""
        samples, evaluates = source != "file", bool(self.eval_task)
        out: dict[str, str] = {}
        if not uses_templates:
            out["templates"] = "methods whose training prompts are the D_syn templates (dail, nll, sft) use it"
        if not samples:
            for name in ("temperature", "top_p", "top_k", "presence_penalty"):
                flag = "--eval-" + name.replace("_", "-")
                out[name] = f"it sets how methods that sample ({sampling_methods}) sample; {flag} the evaluations'"
            if not (evaluates and self.eval_max_tokens is None):
                out["max_tokens"] = (
                    f"methods that sample ({sampling_methods}) and, without --eval-max-tokens, --eval-task use it"
                )
        if not samples and not evaluates:
            for name in (
                "backend",
                "vllm_memory",
                "tensor_parallel_size",
                "enforce_eager",
                "sample_batch_size",
                "grade_workers",
            ):
                out[name] = f"methods that sample ({sampling_methods}) and --eval-task use it"
        if self.backend == "hf":
            out.setdefault("vllm_memory", "--backend vllm uses it")
            out.setdefault("tensor_parallel_size", "--backend vllm uses it")
            out.setdefault("enforce_eager", "--backend vllm uses it")
        elif self.backend == "vllm":
            out.setdefault("sample_batch_size", "--backend hf uses it (vLLM schedules its own batches)")
        if not evaluates:
            for name in EVAL_OPTIONS:
                out[name] = "--eval-task uses it"
        if source == "generate" and not evaluates:  # STaR's generation runs alone; its engine takes what it wants
            out["vllm_memory"] = "the evaluations during training (--eval-task) with --backend vllm use it"
        if source == "online":
            out["loss_mask"] = "the KL losses of methods that train on a file use it"
            for name in ("grad_accum", "max_length", "overlong"):
                out[name] = (
                    "methods that train on a file or on generated traces use it; an online method's step is one "
                    "generation batch (--prompts-per-step), its length limit --max-tokens"
                )
        if self.warmup_ratio is not None:
            out["warmup_clamp"] = "--warmup-steps uses it (--warmup-ratio never exceeds the run)"
        elif self.lr_schedule == "constant":
            out["warmup_clamp"] = "--lr-schedule linear or cosine uses it (a constant rate never depends on the length)"
        if self.lora_r == 0:
            for name in ("lora_alpha", "lora_dropout", "lora_targets"):
                out[name] = "LoRA runs (--lora-r > 0) use it"
            out["merge"] = "LoRA runs use it; with --lora-r 0 the run saves the full model already"
        return out

    def settings(self) -> dict:
        """What determines the trained weights, and the protocol of the evaluations during training (a resume must
        match; see `resume_may_change`)."""
        weights = as_settings(
            self,
            exclude=(
                "eval_task",
                *EVAL_OPTIONS,
                "out",
                "progress",
                "report_to",
                "save_every",
                "dry_run",
                "enforce_eager",
                "device",
                "plugin_dir",
                "loss_opt",
                "method_opt",
                "grade_workers",
                "threads",
            ),
        )
        return {**weights, "evaluation": self.evaluation()}

    def evaluation(self) -> dict | None:
        """The evaluations' protocol (None without --eval-task); --eval-every only says when."""
        if not self.eval_task:
            return None
        protocol = {k: getattr(self, f"eval_{k}") for k in EVAL_PROTOCOL}
        return {"task": list(self.eval_task), **protocol, "max_tokens": self.eval_max_tokens or self.max_tokens}


EVAL_PROTOCOL = ("n", "limit", "temperature", "top_p", "top_k", "presence_penalty", "seed")


def resume_may_change(cfg: TrainConfig, method: Any, old: dict | None) -> tuple[str, ...]:
    """The recorded settings a resume may change: those this run never uses (an older record may hold other
    values), the method's unused options, and the evaluations' protocol where the run had none (or an older
    record without the key): one curve holds one protocol."""
    moot = tuple(cfg.unused(method.source, "", method.uses_templates))
    moot += tuple(f"method_options.{name}" for name in method.unused_options())
    if old is None or old.get("evaluation") is None:
        moot += ("evaluation", *(f"evaluation.{k}" for k in ("task", "max_tokens", *EVAL_PROTOCOL)))
    return moot


def keep_evaluation(old: dict | None, settings: dict) -> dict:
    """`settings` to record: a resume without evaluations keeps the recorded protocol, so that a later one with
    another protocol is still refused."""
    if settings.get("evaluation") is None and old is not None and old.get("evaluation") is not None:
        return {**settings, "evaluation": old["evaluation"]}
    return settings
