"""Keep transformers' per-shard progress bars and advisory warnings out of our output."""

from __future__ import annotations


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
