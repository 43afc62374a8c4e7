"""`tiny-random`: a tiny Qwen2-architecture model built offline, deterministically, in seconds.

Shapes: 2 layers, hidden 128, 4 query heads and 2 KV heads (head_dim 32, the smallest head size
vLLM's CPU attention supports), vocabulary 512, an untied output head (with tied embeddings a random
model mostly predicts its current token again, so greedy decoding degenerates into repetition).

It exists so that tests, demos and CI exercise the real code paths (chat template, batched
generation, LoRA, KL losses) with no download. The tokenizer is a byte-level BPE trained in-process
on a fixed text; the weights are random with a fixed seed. The result is cached on disk (built in a
temporary directory, then renamed into place, so a killed build never leaves a broken cache).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dail_harness.files import apply_umask_modes, temp_dir

ALIAS = "tiny-random"
VERSION = "v3"  # bump when the recipe changes, so stale caches are not reused
SEED = 0
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking %}<think>\n{% endif %}"
    "{% endif %}"
)

# The fixed training text for the tokenizer: prompt wording, mathematical notation, digits.
_CORPUS = r"""
## Problem:
Find the number of ordered pairs of positive integers (a, b) such that a + b = 1000.
Begin your step-by-step thinking process.
You are an expert mathematician solving the following problem. Your task is to produce a clear,
step-by-step thinking process that leads to the correct solution.
Hint: To help you, here are reference solution(s). ## Reference Solution(s):
Solution 1: Let x = 2k + 1. Then x^2 = 4k^2 + 4k + 1, so the remainder is 1 modulo 8.
Solution 2: We compute \frac{1}{2} + \frac{1}{3} = \frac{5}{6} and \sqrt{2} \cdot \sqrt{8} = 4.
Please reason step by step, and put your final answer within \boxed{}.
The final answer is \boxed{204}. Therefore the answer is $\boxed{33}$.
Answer the following multiple choice question. Answer: A B C D (A) (B) (C) (D)
<think> Let me think. First, note that n + 1 divides n^2 - 1. </think>
0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 2025 0.5 3.14 -1 e^{-x} n^{k+1} 2k 100n n+1 2k-1
\left( \right) \cdot \times \div \le \ge \neq \pi \theta \alpha \beta \sum_{i=1}^{n} \int_0^1 dx
triangle circle area perimeter probability integer prime divisor remainder sequence polynomial
"""


def cache_root() -> Path:
    return Path(os.environ.get("DAIL_HARNESS_CACHE", Path.home() / ".cache" / "dail-harness"))


def model_dir() -> Path:
    return cache_root() / "models" / f"{ALIAS}-{VERSION}"


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<think>", "</think>"],
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


SHAPES = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def random_qwen2(tokenizer, shapes: dict, stop_ids: list[int] | None = None):
    """A Qwen2-architecture model of `shapes` over the tokenizer's vocabulary, random with the fixed seed;
    generation stops at `stop_ids` (default: the tokenizer's EOS)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        **shapes,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        torch_dtype="float32",  # type: ignore[call-arg]  # kept: the cached config.json records it
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = stop_ids or tokenizer.eos_token_id
    return model


def build_cached(target: Path, build_tokenizer: Callable[[], Any], build_model: Callable[[Any], Any]) -> Path:
    """`target`: the tokenizer and the model built from it, saved into a temporary directory and renamed into
    place on first use, so a killed build never leaves a broken cache (and two processes building at once
    both end with one)."""
    if (target / "config.json").exists():
        return target
    if _waits_for_rank_zero():
        return _wait_for(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(target.parent, f".{target.name}.")
    try:
        tokenizer = build_tokenizer()
        build_model(tokenizer).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        apply_umask_modes(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process built it first
            if not (target / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


BUILD_WAIT_S = 600.0


def _waits_for_rank_zero() -> bool:
    """In a launched process group, transformers writes a model's weights on rank 0 only (its
    `should_save_on_this_rank`): another rank's build would hold a tokenizer and no model, so it waits."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _wait_for(target: Path) -> Path:
    """`target` once rank 0 has built it (renamed into place whole)."""
    import time

    from dail_harness.errors import HarnessError

    deadline = time.monotonic() + BUILD_WAIT_S
    while not (target / "config.json").exists():
        if time.monotonic() > deadline:
            raise HarnessError(f"waited {BUILD_WAIT_S:.0f} s for rank 0 to build {target.name}", path=str(target))
        time.sleep(0.2)
    return target


def ensure_tiny_random() -> Path:
    """Return the cached tiny-random directory, building it on first use."""
    return build_cached(model_dir(), build_tokenizer, lambda tok: random_qwen2(tok, SHAPES))
