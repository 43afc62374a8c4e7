"""The training engine shared by every method: LoRA on the student, references with the adapter off.

One set of weights serves every context: the student pass runs with the LoRA adapter on and
gradients; reference passes (privileged, negative, or the student's own context as the frozen
reference policy) run with the adapter disabled under no_grad. Losses are full-vocabulary and
computed in token chunks (`losses.chunked_sums`).

The engine owns the loop for all three kinds of method (`recipes.py`): a step plan (epochs over
examples, or over prompts for online methods), each process's share of a step's micro-batches
(DDP), accumulation, the optimizer, logging, checkpoints and resume. A checkpoint holds the LoRA
weights, optimizer, scheduler and step; data order and sampling are keyed by the seed and step, so a
killed run resumes and reproduces the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dail_harness import registry
from dail_harness.backends.base import SamplingBackend
from dail_harness.dsyn.prompts import Templates
from dail_harness.errors import HarnessError
from dail_harness.files import append_jsonl, atomic_write_jsonl, iter_jsonl
from dail_harness.options import Where, refuse_unused
from dail_harness.sampling import SAMPLING_SETTINGS
from dail_harness.training.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_sharded_checkpoint,
    save_checkpoint,
    save_sharded_checkpoint,
    step_of,
)
from dail_harness.training.config import TrainConfig, keep_evaluation, resume_may_change
from dail_harness.training.examples import (
    AUTHORS_MASK,
    REFERENCE,
    Example,
    build_example,
    collate,
    flat_extras,
    flat_targets,
)
from dail_harness.training.losses import TokenLoss, chunked_sums, make_loss
from dail_harness.training.plan import (
    LENGTH_SETTINGS,
    StepBatch,
    StepSource,
    epochs_covered,
    micro_batches,
    offline_batches,
    plan_steps,
)
from dail_harness.training.policy import Policy
from dail_harness.training.recipes import FileMethod, Method, make_method
from dail_harness.worklog import SettingsRecord

MAX_BAD_STEPS = 10


class StudentHidden(torch.nn.Module):
    """The trainable forward: final hidden states at the positions that predict response tokens.
    A module of its own so DDP (accelerate) sees the forward and synchronises the gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask, index):
        h = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        return h[index[0], index[1]]


def compute_loss(
    student: torch.nn.Module,
    policy: Policy,
    examples: list[Example],
    loss_obj: TokenLoss,
    pad_id: int,
    device,
    chunk: int,
    mask: str = "ours",
):
    """The loss of a micro-batch: student hidden states with the adapter, references without. `mask` picks
    the scored positions (`examples.positions`)."""
    ids, attention, index = collate(examples, "student", pad_id, device, mask)
    h_s = student(ids, attention, index)
    refs = {}
    if loss_obj.contexts:
        with policy.reference() as (decoder, _):
            for ctx in loss_obj.contexts:
                same = ctx == REFERENCE  # the student's own context, adapter off
                ids_c, att_c, idx_c = (ids, attention, index) if same else collate(examples, ctx, pad_id, device, mask)
                refs[ctx] = decoder(input_ids=ids_c, attention_mask=att_c).last_hidden_state[idx_c[0], idx_c[1]]
    targets = flat_targets(examples, device, mask, pad_id)
    names = loss_obj.extras + tuple(n for n in loss_obj.optional_extras if all(n in e.extras for e in examples))
    extras = flat_extras(examples, names, device) if names else None
    sums = chunked_sums(
        h_s,
        refs,
        targets,
        policy.head(),
        loss_obj.terms_fn,
        loss_obj.terms,
        chunk,
        extras,
        ref_head=policy.reference_head(),
    )
    return loss_obj.combine(sums, len(targets)), len(targets)


def split_plugin_options(cfg: TrainConfig, given: dict, wheres: dict[str, Where], method_cls, loss_cls) -> tuple:
    """Route the plugin flags the user gave (and --method-opt / --loss-opt) to the method and the loss."""
    import dataclasses

    method_fields = {f.name for f in dataclasses.fields(method_cls.Options)}
    loss_fields = {f.name for f in dataclasses.fields(loss_cls.Options)}
    loss_name = cfg.loss or method_cls.default_loss
    shared = sorted(method_fields & loss_fields)
    if shared:  # a flag could set only one of the two
        raise HarnessError(
            f"method '{cfg.method}' and loss '{loss_name}' both have an option '{shared[0]}': rename one of them"
        )
    m_given, l_given = dict(cfg.method_opt), dict(cfg.loss_opt)
    m_where = {k: _opt_where("method_opt", k, wheres) for k in m_given}
    l_where = {k: _opt_where("loss_opt", k, wheres) for k in l_given}
    for key, value in given.items():
        where = wheres.get(key) or Where("--" + key.replace("_", "-"))
        if key in method_fields:
            target, target_where, opt = m_given, m_where, "--method-opt"
        elif key in loss_fields:
            target, target_where, opt = l_given, l_where, "--loss-opt"
        else:
            raise HarnessError(
                f"{where.flag} is not an option of method '{cfg.method}' or of its loss "
                f"'{loss_name}' (method options: "
                f"{', '.join(sorted(method_fields)) or 'none'}; loss options: "
                f"{', '.join(sorted(loss_fields)) or 'none'})"
            )
        if key in target:
            raise where.error(f"sets the same option as {opt} {key}=...: give one")
        target[key], target_where[key] = value, where
    return m_given, m_where, l_given, l_where


def _opt_where(field: str, key: str, wheres: dict[str, Where]) -> Where:
    """Where one KEY=VALUE of --method-opt / --loss-opt came from: a config file's entry keeps the file, so a
    relative path in it is read from the file's directory as every other path of the file is."""
    flag = "--" + field.replace("_", "-") + f" {key}"
    given = wheres.get(field)
    if given is not None and given.path is not None:
        return Where(flag, path=given.path, key=f"{given.key}.{key}")
    return Where(flag)


def resolve(
    cfg: TrainConfig, given: dict | None = None, wheres: dict[str, Where] | None = None
) -> tuple[Method, TokenLoss]:
    """The method and loss of a run, their options built and checked."""
    method_cls = registry.get("methods", cfg.method)
    loss_cls = registry.get("losses", cfg.loss or method_cls.default_loss)
    m_given, m_where, l_given, l_where = split_plugin_options(cfg, given or {}, wheres or {}, method_cls, loss_cls)
    method = make_method(cfg.method, m_given, m_where)
    refuse_unused(method.unused_options(), {k: w for k, w in m_where.items() if k in m_given})
    loss = make_loss(cfg.loss or method_cls.default_loss, l_given, l_where)
    if cfg.loss_mask == AUTHORS_MASK and (loss.uses_targets or method.source == "online"):
        raise HarnessError(
            f"--loss-mask authors scores a position that predicts no token: it works with the KL "
            f"losses of file methods (dail, kl), not with loss '{loss.name}' of method '{cfg.method}'"
        )
    refuse_mismatched_loss(cfg.method, method, loss)
    return method, loss


def refuse_mismatched_loss(name: str, method: Method, loss: TokenLoss) -> None:
    """A loss must find what it reads in the method's examples and must read the method's reward: `--method grpo
    --loss nll` would train on every sample whatever its reward, `--loss kl` has no privileged context."""
    where = f"loss '{loss.name}' with method '{name}'"
    missing = [c for c in loss.contexts if c != REFERENCE and c not in method.contexts]
    if missing:
        raise HarnessError(f"{where}: the loss needs the {missing[0]} context, which the method's examples lack")
    lacking = [e for e in loss.extras if e not in method.extras]
    if lacking:
        raise HarnessError(f"{where}: the loss reads per-token '{lacking[0]}', which the method does not produce")
    read = set(loss.extras) | set(loss.optional_extras)
    if method.signal and not read & set(method.signal):
        reads = {n: set(registry.get("losses", n).extras) for n in registry.names("losses")}
        fits = [n for n, e in reads.items() if e <= set(method.extras) and e & set(method.signal)]
        raise HarnessError(
            f"{where}: the loss does not read '{method.signal[0]}', which carries the method's reward, so it would "
            f"train on every sample alike; losses that read it: {', '.join(fits) or 'none registered'}"
        )


def load_examples(
    cfg: TrainConfig, method: FileMethod, loss_obj: TokenLoss, tokenizer, data: str | None = None
) -> tuple[list[Example], int]:
    """The examples of a file method, and how many were dropped: with `--overlong drop` (the authors' rule) an
    example whose student or privileged sequence reaches --max-length is left out."""
    data = data or cfg.data
    rows = method.load_rows(data)
    templates = Templates.from_file(cfg.templates) if cfg.templates else Templates()
    limit = int(cfg.max_length or 0)
    examples, dropped = [], 0
    for row in rows:
        try:
            ex = build_example(
                f"{row['problem_id']}#{row.get('sample_index', 0)}",
                method.prompts(row, loss_obj.contexts, templates),
                method.response(row),
                tokenizer,
                max_length=None if cfg.overlong == "drop" else limit,
                chat_template_kwargs={"enable_thinking": cfg.thinking},
            )
        except ValueError as e:
            raise HarnessError(str(e), path=data, line=row["_line"]) from None
        too_long = any(len(ex.inputs[c]) >= limit for c in ("student", "privileged") if c in ex.inputs)
        if cfg.overlong == "drop" and too_long:
            dropped += 1
            continue
        examples.append(ex)
    if not examples:
        raise HarnessError(
            f"every example reaches --max-length {limit} ({dropped} dropped): raise --max-length or "
            "use --overlong truncate",
            path=data,
        )
    return examples, dropped


def make_optimizer(cfg: TrainConfig, params: list) -> torch.optim.Optimizer:
    """AdamW, or bitsandbytes' paged 8-bit AdamW (the authors' `paged_adamw_8bit`)."""
    if cfg.optimizer == "paged_adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise HarnessError(
                "--optimizer paged_adamw_8bit needs bitsandbytes (pip install bitsandbytes, on a GPU "
                "machine); --optimizer adamw needs nothing"
            ) from None
        return bnb.optim.PagedAdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


SCHEDULES = {"linear": "linear", "constant": "constant_with_warmup", "cosine": "cosine"}
"""--lr-schedule -> transformers' scheduler name (the same closed forms as TRL's and verl's)."""


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """Warm-up, then linear or cosine decay to 0 at `total_steps` (the authors' linear; TRL's default), or a
    constant rate (verl's default; it does not depend on the total, so an extended run equals a fresh longer one)."""
    from transformers import get_scheduler

    if cfg.warmup_ratio is not None:
        warmup = math.ceil(cfg.warmup_ratio * total_steps)
    else:
        clamp = cfg.warmup_clamp and cfg.lr_schedule != "constant"  # a constant rate must not depend on the length
        warmup = min(cfg.warmup_steps, total_steps) if clamp else cfg.warmup_steps
    name = SCHEDULES[cfg.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(1, total_steps))


def check_length(out: Path, ckpt: Path | None, total_steps: int, cfg: TrainConfig) -> None:
    """Refuse a plan shorter than the steps a run already holds (a longer one extends it)."""
    done = step_of(ckpt) if ckpt is not None else 0
    if done > total_steps:
        raise HarnessError(
            f"{out} already holds {done} trained steps, more than the {total_steps} this run plans "
            f"(max_steps {cfg.max_steps}, epochs {cfg.epochs}): pass --max-steps {done} or more to resume or "
            "extend it, or use another --out"
        )


ACCELERATE_FSDP_REFUSED = (
    "accelerate's own FSDP was asked for (accelerate launch --use_fsdp or an FSDP config): launch without it and "
    "pass `train --fsdp`, FSDP2 applied by the harness (accelerate 1.x turns its FSDP on only for accelerator "
    "devices and wraps the model its own way; see docs/SCALE.md)"
)


def refuse_accelerate_fsdp(accelerator=None) -> None:
    """Refuse accelerate's FSDP plugin: asked for through accelerate (ACCELERATE_USE_FSDP, what `accelerate launch
    --use_fsdp` sets; checked before anything runs) or turned on in `accelerator`. FSDP is `train --fsdp`."""
    import os

    from accelerate.utils import DistributedType

    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if asked or (accelerator is not None and accelerator.distributed_type == DistributedType.FSDP):
        raise HarnessError(ACCELERATE_FSDP_REFUSED)


SHOWN = ("loss", "kl_ps", "kl_nr", "reward", "kl")
"""The log values the progress bar shows."""


class Trainer:
    """One training run: model, LoRA, optimizer, scheduler, accelerator, checkpoints and the log."""

    def __init__(self, cfg: TrainConfig, method: Method, loss: TokenLoss, settings: dict):
        from accelerate import Accelerator

        from dail_harness.models.loading import load_tokenizer, quiet_transformers, resolve_model

        self.cfg, self.method, self.loss = cfg, method, loss
        self.out = Path(cfg.out)
        self.path = resolve_model(cfg.model)
        quiet_transformers()
        self.tokenizer = load_tokenizer(self.path)
        self.cpu = cfg.device == "cpu" or not torch.cuda.is_available()
        self.accelerator = Accelerator(
            cpu=self.cpu,
            mixed_precision="no" if self.cpu else "bf16",
            log_with=cfg.report_to,
            project_dir=str(self.out),
        )
        refuse_accelerate_fsdp(self.accelerator)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.settings = {**settings, "processes": self.world}  # a step's data order depends on it
        self.record = SettingsRecord(self.out / "train_config.json", self.out, "training run")
        # a longer run extends a finished one; a setting this method never uses may differ from an older record's
        old = self.record.read() if self.record.exists() else None
        self.settings = keep_evaluation(old, self.settings)
        self.record.check(self.settings, may_change=(*LENGTH_SETTINGS, *resume_may_change(cfg, method, old)))
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )

    def build(self, total_steps: int) -> None:
        """Load the model (LoRA, or all weights with --lora-r 0), set up the optimizer and schedule, and restore
        the last checkpoint (or start from --init)."""
        cfg = self.cfg
        ckpt = latest_checkpoint(self.out)
        check_length(self.out, ckpt, total_steps, cfg)
        torch.manual_seed(cfg.seed)
        dtype = torch.float32 if self.cpu else torch.bfloat16
        self.policy = Policy(self.path, cfg, dtype, need_reference=bool(self.loss.contexts))
        if ckpt is None and cfg.init:
            self.policy.load_adapter(cfg.init)
        self.place()
        optimizer = make_optimizer(cfg, self.params)
        self.scheduler = make_scheduler(cfg, optimizer, total_steps)
        # the scheduler stays unprepared: our step plan is already global, and accelerate's wrapper would advance it
        # once per process per optimizer step
        self.optimizer = optimizer if cfg.fsdp else self.accelerator.prepare(optimizer)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.accelerator.is_main_process:  # one writer: the record's provenance history is read-modify-write
            self.record.write(self.settings)
        self.accelerator.wait_for_everyone()
        self.log_path = self.out / "train_log.jsonl"
        self.start_step = 0
        if ckpt is not None and cfg.fsdp:
            self.start_step = load_sharded_checkpoint(ckpt, self.student, self.optimizer, self.scheduler)["step"]
        elif ckpt is not None:
            state = load_checkpoint(ckpt, self.optimizer, self.scheduler)
            self.policy.load_state_dict(state["weights"])
            self.start_step = state["step"]
        self.resumed_log: dict = {}  # the last logged step a resumed (or finished) run starts from
        if self.log_path.exists():  # keep exactly the steps the checkpoint covers
            kept = [r for _, r in iter_jsonl(self.log_path, allow_partial_tail=True) if r["step"] <= self.start_step]
            atomic_write_jsonl(self.log_path, kept)
            self.resumed_log = kept[-1] if kept else {}
        if cfg.report_to:
            self.accelerator.init_trackers("dail-harness", config={k: str(v) for k, v in self.settings.items()})

    def place(self) -> None:
        """The policy on this process's device, as DDP replicas or (--fsdp) sharded over the processes; sets the
        module the loop calls and the parameters that train (sharding replaces them)."""
        device = self.accelerator.device
        student = StudentHidden(self.policy.model)
        if self.cfg.fsdp:  # fully_shard moves each module's shard to the device: the whole model never is there
            from dail_harness.training.sharding import shard

            if self.accelerator.mixed_precision == "bf16":  # as accelerate wraps a DDP model's forward
                student.forward = torch.autocast(device.type, dtype=torch.bfloat16)(student.forward)  # type: ignore[method-assign]
            self.policy.frozen_decoder = shard(self.policy, student, device)
            self.student = student
        else:
            self.policy.to(device)
            self.student = self.accelerator.prepare(student)
        self.params = self.policy.trainable()

    def whole_policy(self):
        """A block in which every process holds the policy's whole weights (entered by all together; nothing to
        do without --fsdp): sampling runs inside it."""
        if not self.cfg.fsdp:
            return contextlib.nullcontext()
        from dail_harness.training.sharding import whole

        return whole(self.student)

    def checkpoint(self, step: int) -> None:
        """Save a checkpoint of `step`: the main process alone, or with --fsdp every process its shard."""
        main = self.accelerator.is_main_process
        if self.cfg.fsdp:
            save_sharded_checkpoint(self.out, step, self.student, self.optimizer, self.scheduler, main)
        elif main:
            save_checkpoint(self.out, step, self.policy.state_dict(), self.optimizer, self.scheduler)

    @torch.no_grad()
    def token_logps(self, examples: list[Example]) -> list[list[float]]:
        """Each example's per-token log-probabilities under the current policy (stored as old log-probs)."""
        out = []
        head = self.policy.head()
        for batch in micro_batches(examples, self.cfg.batch_size):
            ids, mask, index = collate(batch, "student", self.pad_id, self.accelerator.device)
            hidden = self.student(ids, mask, index)
            targets = flat_targets(batch, self.accelerator.device)
            values = []
            for start in range(0, len(targets), self.cfg.chunk_tokens):
                sl = slice(start, start + self.cfg.chunk_tokens)
                z = head(hidden[sl])
                logp = torch.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
                values.append(logp.gather(1, targets[sl, None])[:, 0])
            flat = torch.cat(values).double().tolist()
            for e in batch:
                out.append(flat[: len(e.targets)])
                flat = flat[len(e.targets) :]
        return out

    def fit(self, source: StepSource, desc: str) -> dict:
        """Train on a step source from the last checkpoint to the end and save the result: plan, build, loop,
        finish. Returns the steps, the last log row and what the source reports."""
        total = source.plan(self)
        self.check_sampling(source)
        self.build(total)
        with source.open(self):
            last = self.run(total, source.batch, desc, align=source.align)
        self.finish(total)
        return {"steps": total, "last": last, **source.result(), "resumed_from": self.start_step}

    def run(self, total_steps: int, step_batch: Callable[[int], StepBatch], desc: str, *, align: int = 1) -> dict:
        """The loop, from the last checkpoint: a step's batch, gradients, update; then log, evaluate, checkpoint.
        Checkpoints fall on multiples of `align` (online methods reuse a generation batch for `align` steps and
        can only resume at its start). Returns the last log row."""
        from tqdm import tqdm

        bar = tqdm(
            total=total_steps,
            initial=self.start_step,
            desc=desc,
            unit="step",
            disable=not self.cfg.progress or not self.accelerator.is_main_process,
            dynamic_ncols=True,
        )
        bad, last = 0, dict(self.resumed_log)
        self.student.train()
        for step in range(self.start_step, total_steps):
            t0 = time.perf_counter()
            batch = step_batch(step)
            t_update = time.perf_counter()
            sums = self.gradients(step, batch)
            if sums["non_finite"] > 0:  # skip the update, stop after MAX_BAD_STEPS in a row
                bad = self.skip(step, bad + 1)
                continue
            bad = 0
            lr = self.update()
            last = self.log_row(step, batch, sums, lr, t0, t_update)
            every = self.cfg.eval_every or total_steps  # without --eval-every: at the end only
            if self.cfg.eval_task and ((step + 1) % every == 0 or step + 1 == total_steps):
                if step + 1 == total_steps:  # a failing evaluation loses no step
                    self.checkpoint(step + 1)
                last.update(self.evaluate(step + 1))
            self.after_step(last, bar)
            if (step + 1) % align == 0 and step + 1 < total_steps and (step + 1) % self.cfg.save_every == 0:
                self.checkpoint(step + 1)
        bar.close()
        return last

    def gradients(self, step: int, batch: StepBatch) -> dict[str, float]:
        """Backward over this process's micro-batches, scaled so that DDP's average is the step's mean (or sum);
        returns the step's sums over every process (tokens, loss, non-finite count, the loss's stats)."""
        accelerator, summed = self.accelerator, self.loss.reduction == "sum"
        mine = batch.micro_batches
        # every process joins the gradient all-reduce; one without data this step adds zero. With FSDP every
        # forward and backward is collective, so every process runs as many micro-batches as the busiest one.
        rounds = self.busiest(len(mine)) if self.cfg.fsdp else max(1, len(mine))
        weights = [1.0] * len(mine) + [0.0] * (rounds - len(mine))
        if rounds > len(mine):
            if not (batch.idle or mine):
                raise HarnessError(
                    f"step {step + 1}: this process has no examples to join the step with; "
                    "use fewer processes or more prompts per step"
                )
            mine = mine + [batch.idle or mine[0]] * (rounds - len(mine))
        scale = self.world if summed else self.world / batch.total_micro_batches
        acc: dict[str, float] = {"tokens": 0.0, "loss": 0.0, "non_finite": 0.0}
        for k, (examples, w) in enumerate(zip(mine, weights)):
            sync = accelerator.no_sync(self.student) if k < len(mine) - 1 else contextlib.nullcontext()
            with sync:
                result, n = compute_loss(
                    self.student,
                    self.policy,
                    examples,
                    self.loss,
                    self.pad_id,
                    accelerator.device,
                    self.cfg.chunk_tokens,
                    self.cfg.loss_mask,
                )
                finite = bool(torch.isfinite(result.loss))
                accelerator.backward(result.loss * (scale * w))
            acc["tokens"] += w * n
            acc["loss"] += w * float(result.loss.detach())
            acc["non_finite"] += w * (not finite)
            for key, v in result.stats.items():
                acc[f"stat:{key}"] = acc.get(f"stat:{key}", 0.0) + w * v
        keys = sorted(acc)  # every process runs the same loss, so the same keys
        reduced = accelerator.reduce(
            torch.tensor([acc[k] for k in keys], dtype=torch.float64, device=accelerator.device), reduction="sum"
        )
        return dict(zip(keys, reduced.tolist()))

    def busiest(self, count: int) -> int:
        """The largest `count` of any process (at least 1)."""
        t = torch.tensor([max(1, count)], dtype=torch.int64, device=self.accelerator.device)
        return int(self.accelerator.reduce(t, reduction="max").item()) if self.world > 1 else max(1, count)

    def skip(self, step: int, bad: int) -> int:
        """Drop a step whose loss is not finite; returns how many in a row."""
        self.optimizer.zero_grad()
        self.accelerator.print(f"step {step + 1}: non-finite loss, step skipped ({bad} in a row)")
        if bad >= MAX_BAD_STEPS:
            raise HarnessError(f"{MAX_BAD_STEPS} non-finite losses in a row: lower --lr or check the data")
        return bad

    def update(self) -> float:
        """Clip, step the optimizer and the schedule; returns the learning rate this update used."""
        if self.cfg.fsdp:
            from dail_harness.training.sharding import clip_grad_norm

            clip_grad_norm(self.params, self.cfg.max_grad_norm)
        else:
            self.accelerator.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return lr

    def log_row(self, step: int, batch: StepBatch, sums: dict[str, float], lr: float, t0: float, t1: float) -> dict:
        """The step's log row: the loss and its stats per micro-batch (or summed), the batch's own stats, speed."""
        denominator = 1 if self.loss.reduction == "sum" else batch.total_micro_batches
        tokens, now = int(sums["tokens"]), time.perf_counter()
        row = {
            "step": step + 1,
            "loss": sums["loss"] / denominator,
            **{k[5:]: v / denominator for k, v in sums.items() if k.startswith("stat:")},
            **batch.stats,
            "lr": lr,
            "tokens": tokens,
            "tokens_per_s": tokens / (now - t0),
        }
        if self.method.source == "online":
            row["update_seconds"] = now - t1
            row["update_tokens_per_s"] = tokens / max(now - t1, 1e-9)
        return row

    def after_step(self, row: dict, bar) -> None:
        """Main process: append the log row, show it, send it to the trackers."""
        if not self.accelerator.is_main_process:
            return
        append_jsonl(self.log_path, [row])
        bar.update(1)
        shown = {k: f"{v:.4f}" for k, v in row.items() if k in SHOWN and isinstance(v, float)}
        bar.set_postfix(**shown, tok_s=f"{row['tokens_per_s']:.0f}")
        if self.cfg.report_to:
            self.accelerator.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def check_sampling(self, source: StepSource) -> None:
        """Before any training (every process): the evaluation tasks load, and the run's back-end can sample the
        model this run trains (e.g. vLLM serves LoRA only), so a bad setting never costs a run its steps."""
        from dail_harness.eval.pipeline import load_tasks

        if self.cfg.eval_task:
            load_tasks(self.eval_config(0))
        if self.cfg.eval_task or self.method.source != "file":
            registry.get("backends", self.cfg.backend).check_policy(self.cfg)

    def sampler(self) -> SamplingBackend:
        """The live policy as a sampling back-end of the run's --backend (hf: in memory; vllm: the adapter as it
        is at each call). One per run: methods that sample and the evaluations during training share it. Online
        methods build it on every process; a file method's evaluations on the main process alone."""
        if getattr(self, "_sampler", None) is None:
            backend_cls = registry.get("backends", self.cfg.backend)
            every_rank = self.method.source == "online"
            self._sampler = backend_cls.for_policy(self.policy.model, self.tokenizer, self.cfg, every_rank)
        return self._sampler

    def eval_config(self, step: int):
        """The `eval` settings of the evaluation at `step`: every sampling setting explicit (the --eval-* flags)
        and checked as `eval` checks its own."""
        from dail_harness.eval.pipeline import EvalConfig
        from dail_harness.options import build

        cfg = self.cfg
        values = dict(
            task=list(cfg.eval_task or []),
            model=cfg.model,
            out=str(self.out / "evals" / f"step-{step}"),
            backend=cfg.backend,
            n=cfg.eval_n,
            k=str(cfg.eval_n),
            temperature=cfg.eval_temperature,
            top_p=cfg.eval_top_p,
            top_k=cfg.eval_top_k,
            presence_penalty=cfg.eval_presence_penalty,
            seed=cfg.eval_seed,
            max_tokens=cfg.eval_max_tokens or cfg.max_tokens,
            limit=cfg.eval_limit,
            grade_workers=cfg.grade_workers,
            progress=False,
            thinking=cfg.thinking,
        )
        flags = {
            "task": "--eval-task",
            "n": "--eval-n",
            "k": "--eval-n",
            "limit": "--eval-limit",
            "seed": "--eval-seed",
        }
        flags.update({k: "--eval-" + k.replace("_", "-") for k in SAMPLING_SETTINGS if k != "seed"})
        flags["max_tokens"] = "--eval-max-tokens" if cfg.eval_max_tokens else "--max-tokens"
        return build(EvalConfig, values, {k: Where(flags.get(k, "--" + k.replace("_", "-"))) for k in values})

    def evaluate(self, step: int) -> dict:
        """pass@k of the live model on --eval-task (main process; a normal run directory in OUT/evals), sampled
        through the run's back-end with the --eval-* settings."""
        from dail_harness.eval.pipeline import run_eval

        out: dict = {}
        with self.whole_policy():
            if self.accelerator.is_main_process:
                eval_cfg = self.eval_config(step)
                self.policy.model.eval()
                try:
                    summary = run_eval(
                        eval_cfg, backend=self.sampler(), fingerprint=f"live policy of {self.out} at step {step}"
                    )
                finally:
                    self.student.train()
                for task in eval_cfg.task:
                    metrics = summary["per_task"].get(task, summary) if len(eval_cfg.task) > 1 else summary
                    out.update({f"eval/{task}/pass@{k}": v for k, v in metrics["pass_at_k"].items()})
            self.accelerator.wait_for_everyone()
        return out

    def close(self) -> None:
        """Release the policy's sampling back-end (vLLM: its adapter directory; the engine stays cached for reuse,
        `backends.vllm.release_engines` frees it)."""
        sampler, self._sampler = getattr(self, "_sampler", None), None
        if sampler is not None:
            sampler.close()

    def finish(self, total_steps: int) -> None:
        """The last checkpoint, then the trained weights (gathered from the shards with --fsdp) and the record."""
        self.close()
        self.accelerator.wait_for_everyone()
        self.checkpoint(total_steps)
        weights = None
        if self.cfg.fsdp:
            from dail_harness.training.sharding import gathered_weights

            weights = gathered_weights(self.policy.model, trainable_only=self.policy.is_lora)
        if self.accelerator.is_main_process:
            self.policy.save(self.out, self.tokenizer, self.cfg.model, self.cfg.merge, weights)
            self.record.finish()
        if self.cfg.report_to:
            self.accelerator.end_training()


class FileSource(StepSource):
    """A file method's examples (or an iteration's generated ones), in keyed shuffled steps of --grad-accum
    micro-batches per process."""

    def __init__(self, method: FileMethod):
        self.method = method

    def plan(self, trainer: Trainer) -> int:
        cfg = trainer.cfg
        self.examples, self.dropped = load_examples(cfg, self.method, trainer.loss, trainer.tokenizer)
        self.steps = plan_steps(
            len(self.examples),
            epochs=int(cfg.epochs or 1),
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            per_step=cfg.grad_accum * trainer.world,
            max_steps=cfg.max_steps,
            drop_last=cfg.drop_last,
        )
        self.batches = offline_batches(self.examples, self.steps, trainer.rank, trainer.world)
        return len(self.steps)

    def batch(self, step: int) -> StepBatch:
        return self.batches(step)

    def result(self) -> dict:
        return {
            "epochs": epochs_covered(self.steps, len(self.examples)),  # --max-steps may take more or fewer
            "examples": len(self.examples),
            "dropped_overlong": self.dropped,
        }
