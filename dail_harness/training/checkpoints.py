"""Checkpoints of a training run: LoRA weights, optimizer, scheduler and step, written atomically.

A checkpoint directory appears only once complete (written to a temporary name, then renamed); the
last two are kept. The final adapter (loadable by `dail-harness eval --model OUT`) and an optional
merged model are written the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

KEEP = 2


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted(
        (p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").exists()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return ckpts[-1] if ckpts else None


def save_checkpoint(out: Path, step: int, peft_model, optimizer, scheduler, extra: dict | None = None) -> None:
    from peft import get_peft_model_state_dict

    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    torch.save(
        {
            "step": step,
            "lora": get_peft_model_state_dict(peft_model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            **(extra or {}),
        },
        tmp / "state.pt",
    )
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, peft_model, optimizer, scheduler) -> dict:
    """Restore a checkpoint into the model, optimizer and scheduler; returns its state (step, extras)."""
    from peft import set_peft_model_state_dict

    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    set_peft_model_state_dict(peft_model, state["lora"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def save_adapter(out: Path, peft_model, tokenizer, base_model: str, merge: bool) -> None:
    """The adapter in `out` (its base model is the `--model` the user gave) and optionally `out/merged`."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".adapter-"))
    peft_model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    adapter_cfg = json.loads((tmp / "adapter_config.json").read_text())
    adapter_cfg["base_model_name_or_path"] = base_model  # the alias, hub id or path the user gave
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)
    if merge:
        merged_tmp = Path(tempfile.mkdtemp(dir=out, prefix=".merged-"))
        peft_model.merge_and_unload().save_pretrained(merged_tmp)
        tokenizer.save_pretrained(merged_tmp)
        if (out / "merged").exists():
            shutil.rmtree(out / "merged")
        os.rename(merged_tmp, out / "merged")
