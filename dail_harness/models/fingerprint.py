"""A content fingerprint of a model directory (and of an adapter's base model), for run identity.

Two eval runs of "runs/dail" before and after retraining it have the same path and must not be merged or
resumed into each other, so a run records what the weights were, not only where. Hashing every byte of a
15 GB model would cost seconds to minutes on every resume; instead each file contributes its name, its
size and, for a large file, its head, its tail and 16 blocks spread over it (small files, configs,
tokenizers and LoRA adapters included, are hashed whole). Retraining changes every tensor, so a sampled
hash tells it apart; a change of a few bytes in the middle of a large shard could go unnoticed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
