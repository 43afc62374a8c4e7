"""Resolve a MODEL argument (alias, local directory, adapter directory, hub id), fingerprint what it names (for
run identity), and load it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from dail_harness.errors import HarnessError
from dail_harness.models import tiny_random, tiny_random_qwen

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
    if name in ALIASES:
        quiet_transformers()  # building one logs transformers' notices; the cache module stays below this one
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


def quiet_transformers() -> None:
    """Keep transformers' per-shard progress bars and advisory warnings out of our output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# A content fingerprint of a model directory (and of an adapter's base model), for run identity. Two eval runs of
# "runs/dail" before and after retraining it have the same path and must not be merged or resumed into each other,
# so a run records what the weights were, not only where. Hashing every byte of a 15 GB model would cost seconds to
# minutes on every resume; instead each file contributes its name, its size and, for a large file, its head, its
# tail and 16 blocks spread over it (small files, configs, tokenizers and LoRA adapters included, are hashed whole).
# Retraining changes every tensor, so a sampled hash tells it apart; a change of a few bytes in the middle of a
# large shard could go unnoticed.
WHOLE_FILE_BYTES = 16 << 20
BLOCK = 64 << 10
BLOCKS = 16
MODEL_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".model", ".txt", ".tiktoken", ".jinja"}
HARNESS_RECORDS = {"train_config.json", "run.json", "summary.json"}
"""A training run directory is also the adapter's directory: its logs and records are not the model."""


def _file_digest(path: Path, h) -> None:
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            return
        offsets = [0, size - (1 << 20)] + [(size - BLOCK) * i // (BLOCKS - 1) for i in range(BLOCKS)]
        for off in offsets:
            f.seek(off)
            h.update(f.read(1 << 20 if off in (0, size - (1 << 20)) else BLOCK))


def directory_fingerprint(directory: str | os.PathLike) -> str:
    """sha256 over the model files at the top of `directory` (weights, configs, tokenizer: sorted names,
    sizes, sampled contents); subdirectories (checkpoints, evaluations, a merged copy) are not the model."""
    h = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name in HARNESS_RECORDS:
            continue
        if path.suffix not in MODEL_SUFFIXES:
            continue
        h.update(f"{path.name}\0".encode())
        _file_digest(path, h)
    return "sha256:" + h.hexdigest()[:16]


def model_fingerprint(name: str) -> str | None:
    """The fingerprint of MODEL as `eval` would load it: its directory's (and an adapter's base model's); None
    for a hub id, which names its weights itself."""
    from dail_harness.models.loading import adapter_base, resolve_model

    path = resolve_model(name)
    if not Path(path).is_dir():
        return None  # a hub id: the id is the identity (its cache may not exist yet, and moves with the hub)
    own = directory_fingerprint(path)
    base = adapter_base(path)
    if base is None:
        return own
    return f"{own}+base:{model_fingerprint(base)}"
