"""Training examples: one response tokenized once and spliced after each context's prompt.

Tokenizing the response separately per context (as the authors' code does) only aligns the three
sequences if tokenization at the prompt/response boundary agrees; splicing the same ids guarantees
it. `positions` are the indices whose logits predict the response tokens (the first response token
included), so the student, privileged and negative distributions align token for token. Online
methods build examples from sampled token ids directly, with per-token `extras` (advantages,
weights, stored log-probabilities) that their loss reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dail_harness.backends.base import render_prompt_ids, text_ids

REFERENCE = "reference"
"""The student's own context with the adapter disabled (the frozen reference policy)."""


@dataclass
class Example:
    example_id: str
    targets: list[int]
    """The response token ids (what is predicted)."""
    inputs: dict[str, list[int]] = field(default_factory=dict)
    """Per context ("student", "privileged", "negative"): prompt ids + response ids."""
    prompt_lengths: dict[str, int] = field(default_factory=dict)
    extras: dict[str, list[float]] = field(default_factory=dict)
    """Per-token values aligned with `targets` (e.g. `weight`, `advantage`, `old_logp`)."""


def build_example(
    example_id: str,
    prompts: dict[str, str],
    response: str,
    tokenizer,
    *,
    max_length: int | None,
    chat_template_kwargs: dict | None = None,
) -> Example:
    """Render each context's prompt, splice the response ids after it; with `max_length` the response (plus
    EOS) is cut so the student sequence fits (None: kept whole)."""
    resp = text_ids(tokenizer, response) + [tokenizer.eos_token_id]
    ex = Example(example_id, [])
    rendered = {
        name: render_prompt_ids(tokenizer, text, chat_template_kwargs=chat_template_kwargs)
        for name, text in prompts.items()
    }
    if max_length is not None:
        room = max_length - len(rendered["student"])
        if room < 1:
            raise ValueError(f"the student prompt of '{example_id}' is longer than --max-length {max_length}")
        resp = resp[:room]
    ex.targets = resp
    for name, ids in rendered.items():
        ex.inputs[name] = ids + resp
        ex.prompt_lengths[name] = len(ids)
    return ex


def sampled_example(
    example_id: str, prompt_ids: list[int], completion_ids: list[int], extras: dict[str, list[float]] | None = None
) -> Example:
    """An example from a sampled completion (online methods): the student context is prompt + completion."""
    return Example(
        example_id,
        list(completion_ids),
        {"student": list(prompt_ids) + list(completion_ids)},
        {"student": len(prompt_ids)},
        dict(extras or {}),
    )


AUTHORS_MASK = "authors"
"""The authors' released mask (`pos > prompt_len`): it skips the predictions of the first two response
tokens and scores the position after the last one. Kept as an option for fidelity (KL losses only: the
extra position predicts no token)."""


def positions(example: Example, context: str, mask: str = "ours") -> range:
    """The positions whose logits are scored: those predicting the response tokens (or the authors' mask)."""
    start = example.prompt_lengths[context] - 1  # the logits here predict the first response token
    n = len(example.targets)
    return range(start + 2, start + n + 1) if mask == AUTHORS_MASK else range(start, start + n)


def collate(
    examples: list[Example], context: str, pad_id: int, device, mask: str = "ours"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T], attention mask, and the flat (row, position) indices that are scored."""
    context = "student" if context == REFERENCE else context
    seqs = [e.inputs[context] for e in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    rows: list[int] = []
    cols: list[int] = []
    for b, (e, s) in enumerate(zip(examples, seqs)):
        ids[b, : len(s)] = torch.tensor(s)
        attention[b, : len(s)] = 1
        scored = positions(e, context, mask)
        rows += [b] * len(scored)
        cols += list(scored)
    index = torch.tensor([rows, cols], dtype=torch.long)
    return ids.to(device), attention.to(device), index.to(device)


def flat_targets(examples: list[Example], device, mask: str = "ours", pad_id: int = 0) -> torch.Tensor:
    """The token each scored position predicts (with the authors' mask: the response from its third token,
    then `pad_id` for the position after the last, which predicts nothing)."""
    if mask == AUTHORS_MASK:
        return torch.tensor([t for e in examples for t in [*e.targets[2:], pad_id]], dtype=torch.long, device=device)
    return torch.tensor([t for e in examples for t in e.targets], dtype=torch.long, device=device)


def flat_extras(examples: list[Example], names: tuple[str, ...], device) -> dict[str, torch.Tensor]:
    """Each named per-token extra, flattened like `flat_targets` (float64, so weights sum exactly)."""
    out = {}
    for name in names:
        missing = next((e.example_id for e in examples if name not in e.extras), None)
        if missing is not None:
            raise ValueError(f"example '{missing}' has no per-token '{name}' (the loss needs it)")
        out[name] = torch.tensor([v for e in examples for v in e.extras[name]], dtype=torch.float64, device=device)
    return out
