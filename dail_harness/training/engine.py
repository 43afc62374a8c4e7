"""The training engine shared by every method: LoRA on the student, references with the adapter off.

One set of weights serves three contexts: the student pass runs with the LoRA adapter on and
gradients; the privileged and negative-reference passes run with the adapter disabled under
no_grad (their logits are the frozen base model's). Losses are full-vocabulary and computed in token
chunks (`chunked.py`). Accumulation groups and data order are explicit (seeded per epoch), and a
checkpoint holds the LoRA weights, optimizer, scheduler and position, so a killed run resumes with
the same data order and reproduces the uninterrupted loss curve.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dail_harness import registry
from dail_harness.dsyn.prompts import Templates
from dail_harness.errors import HarnessError
from dail_harness.files import append_jsonl, atomic_write_json, iter_jsonl
from dail_harness.eval.store import settings_changes
from dail_harness.training.chunked import DEFAULT_CHUNK, chunked_sums
from dail_harness.training.examples import Example, build_example, collate, flat_targets

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_BAD_STEPS = 10


@dataclass
class TrainConfig:
    """Settings of one `dail-harness train` run (defaults: DESIGN.md / the paper)."""

    method: str
    model: str
    data: str
    out: str
    loss: str | None = None
    """Overrides the method's default loss (`dail-harness list losses`)."""
    gamma: float = 0.1
    """Weight of the negative-reference KL in the `dail` loss."""
    kl_direction: str = "reverse"
    """reverse = KL(student || reference) (the paper's), forward = KL(reference || student)."""
    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lr: float = 2e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = 3
    max_steps: int | None = None
    """Cap on optimizer steps (smoke tests, benchmarks)."""
    batch_size: int = 1
    grad_accum: int = 4
    max_length: int = 2048
    chunk_tokens: int = DEFAULT_CHUNK
    gradient_checkpointing: bool = True
    seed: int = 0
    save_every: int = 50
    """Checkpoint every N optimizer steps (and at the end)."""
    thinking: bool = False
    templates: str | None = None
    merge: bool = False
    """Also write a merged model (out/merged) that transformers and vLLM load."""
    report_to: str | None = None
    """accelerate trackers: tensorboard, wandb, ... (console and out/train_log.jsonl always)."""
    device: str | None = None
    progress: bool = True

    def settings(self) -> dict:
        s = asdict(self)
        for k in ("out", "progress", "report_to", "save_every", "device"):
            s.pop(k)
        return s


class StudentHidden(torch.nn.Module):
    """The trainable forward: final hidden states at the positions that predict response tokens.
    A module of its own so DDP (accelerate) sees the forward and synchronises LoRA gradients."""

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model

    def forward(self, ids, mask, index):
        h = self.peft_model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        return h[index[0], index[1]]


def compute_loss(student: torch.nn.Module, peft_model, examples: list[Example], loss_obj, pad_id: int, device,
                 chunk: int):
    """The loss of a micro-batch: student hidden states with the adapter, references without."""
    ids, mask, index = collate(examples, "student", pad_id, device)
    h_s = student(ids, mask, index)
    refs = {}
    if loss_obj.contexts:
        with torch.no_grad(), peft_model.disable_adapter():
            decoder = peft_model.get_decoder()
            for ctx in loss_obj.contexts:
                ids_c, mask_c, idx_c = collate(examples, ctx, pad_id, device)
                refs[ctx] = decoder(input_ids=ids_c, attention_mask=mask_c).last_hidden_state[idx_c[0], idx_c[1]]
    targets = flat_targets(examples, device)
    head = peft_model.get_output_embeddings()
    sums = chunked_sums(h_s, refs, targets, head, loss_obj.terms_fn, loss_obj.terms, chunk)
    return loss_obj.combine(sums, len(targets)), len(targets)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def plan_steps(n_examples: int, cfg: TrainConfig, world: int = 1) -> list[tuple[int, list[list[int]]]]:
    """Every optimizer step as (epoch, micro-batches of example indices), in order. A step takes
    grad_accum micro-batches per process, so with N processes (DDP) it spans grad_accum x N."""
    steps = []
    per_step = cfg.grad_accum * world
    for epoch in range(cfg.epochs):
        order = epoch_order(n_examples, cfg.seed, epoch)
        micro = [order[i:i + cfg.batch_size] for i in range(0, n_examples, cfg.batch_size)]
        for g in range(0, len(micro), per_step):
            steps.append((epoch, micro[g:g + per_step]))
    return steps[:cfg.max_steps] if cfg.max_steps else steps


def _latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").exists()),
                   key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


def _save_checkpoint(out: Path, step: int, peft_model, optimizer, scheduler) -> None:
    from peft import get_peft_model_state_dict

    final = out / "checkpoints" / f"step-{step}"
    tmp = Path(tempfile.mkdtemp(dir=out / "checkpoints", prefix=".tmp-"))
    torch.save({"step": step, "lora": get_peft_model_state_dict(peft_model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
        shutil.rmtree(old, ignore_errors=True)  # keep the last two


def load_examples(cfg: TrainConfig, method, loss_obj, tokenizer) -> list[Example]:
    rows = method.load_rows(cfg.data)
    templates = Templates.from_file(cfg.templates) if cfg.templates else Templates()
    examples = []
    for row in rows:
        try:
            examples.append(build_example(f"{row['problem_id']}#{row.get('sample_index', 0)}",
                                          method.prompts(row, loss_obj.contexts, templates), method.response(row),
                                          tokenizer, max_length=cfg.max_length,
                                          chat_template_kwargs={"enable_thinking": cfg.thinking}))
        except ValueError as e:
            raise HarnessError(str(e), path=cfg.data, line=row["_line"]) from None
    return examples


def train(cfg: TrainConfig) -> dict:
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, get_scheduler

    from dail_harness.models.loading import load_tokenizer, quiet_transformers, resolve_model

    method = registry.get("methods", cfg.method)()
    loss_name = cfg.loss or method.default_loss
    loss_obj = registry.get("losses", loss_name)(gamma=cfg.gamma, direction=cfg.kl_direction)
    if cfg.kl_direction not in ("reverse", "forward"):
        raise HarnessError(f"--kl-direction must be 'reverse' or 'forward', got '{cfg.kl_direction}'")
    out = Path(cfg.out)
    settings = {**cfg.settings(), "loss": loss_name}
    config_path = out / "train_config.json"
    path = resolve_model(cfg.model)
    quiet_transformers()
    tokenizer = load_tokenizer(path)
    examples = load_examples(cfg, method, loss_obj, tokenizer)
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    accelerator = Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16",
                              log_with=cfg.report_to, project_dir=str(out))
    world, rank = accelerator.num_processes, accelerator.process_index
    settings["processes"] = world  # the data order of a step depends on it: a resume must match
    if config_path.exists():
        details = settings_changes(json.loads(config_path.read_text()), settings)
        if details:
            raise HarnessError(f"{out} holds a training run with different settings ({details}); use another --out")
    steps = plan_steps(len(examples), cfg, world)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if cpu else torch.bfloat16)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                  lora_dropout=cfg.lora_dropout, target_modules=cfg.lora_targets,
                                                  task_type="CAUSAL_LM"))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * len(steps)),
                              num_training_steps=max(1, len(steps)))
    # the scheduler stays unprepared: our step plan is already global, and accelerate's wrapper would
    # advance it once per process per optimizer step
    student, optimizer = accelerator.prepare(StudentHidden(peft_model), optimizer)

    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    atomic_write_json(config_path, settings)
    log_path = out / "train_log.jsonl"
    start_step = 0
    ckpt = _latest_checkpoint(out)
    if ckpt is not None:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        set_peft_model_state_dict(peft_model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = state["step"]
    if log_path.exists():  # keep exactly the steps the checkpoint covers
        kept = [r for _, r in iter_jsonl(log_path, allow_partial_tail=True) if r["step"] <= start_step]
        from dail_harness.files import atomic_write_jsonl

        atomic_write_jsonl(log_path, kept)
    if cfg.report_to:
        accelerator.init_trackers("dail-harness", config={k: str(v) for k, v in settings.items()})

    from tqdm import tqdm

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bar = tqdm(total=len(steps), initial=start_step, desc=f"train ({cfg.method}, {loss_name})", unit="step",
               disable=not cfg.progress or not accelerator.is_main_process, dynamic_ncols=True)
    bad, last = 0, {}
    student.train()
    for step in range(start_step, len(steps)):
        epoch, group = steps[step]
        t0 = time.perf_counter()
        mine = group[rank::world]
        # every process joins the gradient all-reduce; one without data this step adds zero
        weights = [1.0] * len(mine) if mine else [0.0]
        mine = mine or group[:1]
        # DDP averages gradients over processes: scale so the result is the mean over the step's micro-batches
        scale = world / len(group)
        acc: dict[str, float] = {"tokens": 0.0, "loss": 0.0, "non_finite": 0.0}
        finite = True
        for k, (micro, w) in enumerate(zip(mine, weights)):
            batch = [examples[i] for i in micro]
            ctx = accelerator.no_sync(student) if k < len(mine) - 1 else contextlib.nullcontext()
            with ctx:
                result, n = compute_loss(student, peft_model, batch, loss_obj, pad_id, accelerator.device,
                                         cfg.chunk_tokens)
                finite = finite and bool(torch.isfinite(result.loss))
                accelerator.backward(result.loss * (scale * w))
            acc["tokens"] += w * n
            acc["loss"] += w * float(result.loss.detach())
            acc["non_finite"] += w * (not finite)
            for key, v in result.stats.items():
                acc[f"stat:{key}"] = acc.get(f"stat:{key}", 0.0) + w * v
        keys = sorted(acc)  # every process runs the same loss, so the same keys
        reduced = accelerator.reduce(torch.tensor([acc[k] for k in keys], dtype=torch.float64,
                                                  device=accelerator.device), reduction="sum")
        acc = dict(zip(keys, reduced.tolist()))
        tokens, total = int(acc["tokens"]), acc["loss"] / len(group)
        stats = {k[5:]: v / len(group) for k, v in acc.items() if k.startswith("stat:")}
        if acc["non_finite"] > 0:
            optimizer.zero_grad()
            bad += 1
            accelerator.print(f"step {step + 1}: non-finite loss, step skipped ({bad} in a row)")
            if bad >= MAX_BAD_STEPS:
                raise HarnessError(f"{MAX_BAD_STEPS} non-finite losses in a row: lower --lr or check the data")
            continue
        bad = 0
        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        dt = time.perf_counter() - t0
        last = {"step": step + 1, "epoch": epoch, "loss": total, **stats, "lr": scheduler.get_last_lr()[0],
                "tokens": tokens, "tokens_per_s": tokens / dt}
        if accelerator.is_main_process:
            append_jsonl(log_path, [last])
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}", **{k: f"{v:.4f}" for k, v in stats.items() if k != "loss"},
                            tok_s=f"{tokens / dt:.0f}")
            if cfg.report_to:
                accelerator.log({k: v for k, v in last.items() if k != "step"}, step=step + 1)
            if (step + 1) % cfg.save_every == 0 and step + 1 < len(steps):
                _save_checkpoint(out, step + 1, peft_model, optimizer, scheduler)
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_checkpoint(out, len(steps), peft_model, optimizer, scheduler)
        _save_final(out, peft_model, tokenizer, cfg)
    if cfg.report_to:
        accelerator.end_training()
    return {"steps": len(steps), "examples": len(examples), "last": last, "loss": loss_name}


def _save_final(out: Path, peft_model, tokenizer, cfg: TrainConfig) -> None:
    """The adapter (loadable by `dail-harness eval --model OUT`) and optionally a merged model."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".adapter-"))
    peft_model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    adapter_cfg = json.loads((tmp / "adapter_config.json").read_text())
    adapter_cfg["base_model_name_or_path"] = cfg.model  # the alias, hub id or path the user gave
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.merge:
        merged_tmp = Path(tempfile.mkdtemp(dir=out, prefix=".merged-"))
        peft_model.merge_and_unload().save_pretrained(merged_tmp)
        tokenizer.save_pretrained(merged_tmp)
        if (out / "merged").exists():
            shutil.rmtree(out / "merged")
        os.rename(merged_tmp, out / "merged")
