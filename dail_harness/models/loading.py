"""Resolve a MODEL argument (alias, local directory, adapter directory, hub id) and load it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dail_harness.errors import HarnessError
from dail_harness.models import tiny_random, tiny_random_qwen
from dail_harness.models.quiet import quiet_transformers

ALIASES = (tiny_random.ALIAS, tiny_random_qwen.ALIAS)


def looks_like_path(name: str) -> bool:
    """True for a name that can only be a filesystem path, never a hub id ('org/name'): it starts with '.', '/'
    or '~', has a backslash or two slashes, or its parent is a local directory (`runs/x` beside a `runs/`)."""
    path = Path(name).expanduser()
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or (path.parent != Path(".") and path.parent.is_dir())
    )


def recorded_model(name: str) -> str:
    """How an output records the model it came from: a local directory as an absolute path (so an adapter loads
    from any working directory), an alias or hub id as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if name not in ALIASES and path.exists() else name


def resolve_model(name: str) -> str:
    """The path (or hub id) to load for `name`; builds `tiny-random` on first use."""
    if name == tiny_random.ALIAS:
        return str(tiny_random.ensure_tiny_random())
    if name == tiny_random_qwen.ALIAS:
        return str(tiny_random_qwen.ensure_tiny_random_qwen())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise HarnessError("model path is a file; pass the model directory", path=str(path))
        if not ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
            raise HarnessError("not a model directory (no config.json or adapter_config.json)", path=str(path))
        return str(path)
    if looks_like_path(name):  # a path that is not there: say so now, rather than after hub retries
        raise HarnessError(f"model directory not found: '{name}'")
    return name  # a hub id; loading reports a clear error if it is not cached and we are offline


def adapter_base(path: str) -> str | None:
    """For a LoRA adapter directory, the base model it was trained on; else None."""
    cfg = Path(path) / "adapter_config.json"
    if not cfg.exists() or (Path(path) / "config.json").exists():
        return None
    base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    if not base:
        raise HarnessError("adapter_config.json has no base_model_name_or_path", path=str(cfg))
    if base not in ALIASES and looks_like_path(base) and not Path(base).expanduser().exists():
        raise HarnessError(
            f"base_model_name_or_path: the adapter's base model directory '{base}' does not exist (moved or "
            "deleted?); put it back there or edit this field to where it is now",
            path=str(cfg),
        )
    return base


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    quiet_transformers()
    base = adapter_base(path)
    source = resolve_model(base) if base and not (Path(path) / "tokenizer_config.json").exists() else path
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as e:
        raise HarnessError(f"cannot load tokenizer for '{path}': {e}".split("\n")[0]) from None
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes --dtype takes (torch's names; vLLM takes the same)."""


def parse_device(text: str) -> str:
    """--device as given, checked when it is read rather than deep inside a model load: cpu, cuda or cuda:N."""
    if re.fullmatch(r"cpu|mps|(cuda|xpu)(:\d+)?", text):
        return text
    raise ValueError(f"must be cpu, cuda or cuda:N (or mps, xpu, xpu:N), got {text!r}")


def device_option(panel: str | None = None) -> Any:
    """The `--device` field of a command that loads a model for sampling."""
    from dail_harness.options import option

    return option(None, parse=parse_device, help="cpu, cuda, cuda:1 ... (default: cuda if available).", panel=panel)


def dtype_option(panel: str | None = None, default_help: str = "bf16 on GPU, fp32 on CPU") -> Any:
    """The `--dtype` field of a command that loads a model for sampling."""
    from dail_harness.options import option

    return option(None, choices=DTYPES, help=f"{', '.join(DTYPES)} (default: {default_help}).", panel=panel)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device_present(device: str) -> None:
    """A CUDA device asked for that this machine does not have: one line, not a traceback from torch."""
    import torch

    if not device.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        raise HarnessError(f"--device {device}: torch sees {count} CUDA device(s) here; use --device cpu")


def load_causal_lm(path: str, *, device: str | None = None, dtype: str | None = None):
    """Load a causal LM (or base + LoRA adapter) for inference: bf16 on GPU, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    device = device or default_device()
    check_device_present(device)
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    base = adapter_base(path)
    source = resolve_model(base) if base else path
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
        if base:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path).merge_and_unload()
    except OSError as e:
        hint = (
            " (offline: only local directories and the 'tiny-random' alias work)"
            if os.environ.get("HF_HUB_OFFLINE")
            else ""
        )
        if not Path(source).exists():  # e.g. an old adapter's relative base, read from another directory
            hint += f"; '{source}' is no directory under {os.getcwd()}, so it was looked up as a hub id"
        raise HarnessError(f"cannot load model '{path}': {str(e).splitlines()[0]}{hint}") from None
    return model.to(device).eval()  # type: ignore[arg-type]  # transformers' stubs reject a str device


def eos_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Every token that ends a sequence: the tokenizer's EOS plus the generation config's (Qwen lists two)."""
    ids = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    found = set(ids if isinstance(ids, list) else [ids]) | {tokenizer.eos_token_id}
    return sorted(i for i in found if i is not None)
