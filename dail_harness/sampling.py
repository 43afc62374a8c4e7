"""Sampling settings and keyed sampling: every token's randomness is a function of (key, position).

`keyed_gumbel_sample` draws token t = argmax(logits / T + G) with Gumbel noise G computed by a
counter-based hash of (row key, position, token id), which is an exact sample from softmax(logits/T)
restricted to the top-k and top-p set. Because no generator state is consumed, a sample depends only on its key
(seed, problem, sample index) and not on batch composition or order: an interrupted run resumes with
exactly the samples an uninterrupted one would have drawn, and the mixed-policy engine can replay the
token-by-token definition bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

M32 = 0xFFFFFFFF


@dataclass
class SamplingParams:
    """Decoding settings shared by every back-end (vLLM names and semantics). The commands' configs are
    where defaults live; this record carries the values they chose."""

    temperature: float
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float
    """Nucleus sampling: keep the smallest set of tokens with this much probability mass."""
    presence_penalty: float
    """Subtracted from the logit of every token already present in the generated text (vLLM)."""
    max_tokens: int
    """Maximum new tokens per sample."""
    seed: int
    """Base seed; each sample's randomness is keyed by (seed, problem, sample index)."""
    n: int = 1
    """Samples per problem."""
    top_k: int = 0
    """Keep only the k most likely tokens (after the temperature, before top-p, as vLLM does); 0: all."""
    stop: list[str] = field(default_factory=list)
    """Stop strings; the completion ends before the first one (it is not included)."""
    stop_token_ids: list[int] = field(default_factory=list)
    """Token ids that end a sample (kept in its token ids), e.g. `</think>` for a thinking phase."""
    logprobs: bool = False
    """Return each generated token's log-probability under the model's raw distribution (its log-softmax before
    penalties, temperature, top-k and top-p: vLLM's `raw_logprobs`) in `Completion.logprobs`."""

    def to_dict(self) -> dict:
        """The settings that determine the samples (what a run records; asking for log-probs changes none)."""
        return {k: v for k, v in asdict(self).items() if k != "logprobs"}


SAMPLING_PANEL = "Sampling"

_SPECS: dict[str, dict] = {
    "temperature": dict(ge=0, help="Sampling temperature; 0 means greedy decoding."),
    "top_p": dict(gt=0, le=1, help="Nucleus sampling mass: keep the smallest set of tokens with this probability."),
    "top_k": dict(
        ge=0, help="Keep only the k most likely tokens (after the temperature, before top-p, as vLLM); 0: all."
    ),
    "presence_penalty": dict(
        ge=-2, le=2, help="Subtracted once from the logit of every token already in the output (vLLM semantics)."
    ),
    "max_tokens": dict(ge=1, help="Maximum new tokens per sample."),
    "seed": dict(help="Base seed: each sample's randomness is keyed by (seed, item, sample index)."),
}


SAMPLING_SETTINGS = ("temperature", "top_p", "top_k", "presence_penalty", "max_tokens", "seed")
"""The settings of `SamplingSettings` (a config file's `sampling:` section holds them)."""


def sampling_option(name: str, default: Any, *, help: str | None = None, panel: str | None = SAMPLING_PANEL) -> Any:
    """The field of one sampling setting: its valid range and meaning are declared here once, its default (and a
    help text that says what the command means by it) where the command is."""
    from dail_harness.options import option

    spec = _SPECS[name]
    return option(default, **{**spec, "help": help or spec["help"], "panel": panel})


class SamplingSettings:
    """What every command that samples (eval, generate, data hints, train's sampling methods) declares with
    `sampling_option` fields, and the one place those settings become back-end parameters."""

    temperature: float
    top_p: float
    top_k: int
    presence_penalty: float
    max_tokens: int | None
    seed: int

    def sampling_params(self, n: int = 1, **overrides: Any) -> SamplingParams:
        """The back-end parameters for n samples per prompt (`overrides` for a phase's own, e.g. max_tokens)."""
        values: dict[str, Any] = dict(
            n=n,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            presence_penalty=self.presence_penalty,
            max_tokens=self.max_tokens,
            seed=self.seed,
            stop=list(getattr(self, "stop", None) or []),
        )
        values.update(overrides)
        if values["max_tokens"] is None:
            raise ValueError("max_tokens is not set")  # each command resolves its default before sampling
        return SamplingParams(**values)


def stable_key(*parts: object) -> int:
    """A 63-bit key from any parts, stable across processes, machines and Python versions."""
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFFFFFFFFFF


def sample_key(seed: int, request_id: str, sample_index: int) -> int:
    """The randomness key of one sample: every engine that samples keyed uses this."""
    return stable_key("sample", seed, request_id, sample_index)


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser on int64 tensors holding values in [0, 2^32)."""
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & M32  # int64 wrap-around keeps the low 32 bits exact
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


CPU_CHUNK_ELEMENTS = 1 << 19
"""On a CPU the noise is made a few rows at a time (about 4 MB of int64 per step), so the hash's passes stay in the
cache instead of streaming [B, V] int64 temporaries through memory: 15x faster for a 152k vocabulary."""

_TOKEN_TERMS: dict[tuple[int, str], torch.Tensor] = {}


def _token_term(vocab_size: int, device: torch.device) -> torch.Tensor:
    """(token id * 0x27D4EB2F) mod 2^32 for every token id, computed once per vocabulary size and device."""
    key = (vocab_size, str(device))
    if key not in _TOKEN_TERMS:
        _TOKEN_TERMS[key] = (torch.arange(vocab_size, device=device, dtype=torch.int64) * 0x27D4EB2F) & M32
    return _TOKEN_TERMS[key]


def _fmix32_(h: torch.Tensor) -> torch.Tensor:
    """`_fmix32` in place (the same bits, without a temporary per step)."""
    h.bitwise_xor_(h >> 16)
    h.mul_(0x85EBCA6B).bitwise_and_(M32)
    h.bitwise_xor_(h >> 13)
    h.mul_(0xC2B2AE35).bitwise_and_(M32)
    return h.bitwise_xor_(h >> 16)


def row_chunks(rows: int, vocab_size: int, device: torch.device) -> list[slice]:
    """The row slices noise is made in: all rows at once on an accelerator, a few at a time on a CPU."""
    step = rows if device.type != "cpu" else max(1, CPU_CHUNK_ELEMENTS // max(1, vocab_size))
    return [slice(s, s + step) for s in range(0, rows, max(1, step))]


def keyed_uniform(keys: torch.Tensor, positions: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform(0, 1) noise of shape [B, V], a pure function of (key, position, token id)."""
    keys = keys.to(torch.int64)
    positions = positions.to(device=keys.device, dtype=torch.int64)
    lo, hi = keys & M32, (keys >> 32) & M32
    row = _fmix32(lo ^ _fmix32((positions * 0x9E3779B1 + 0x7F4A7C15) & M32))
    row = _fmix32(row ^ hi)[:, None]
    tok = _token_term(vocab_size, keys.device)[None, :]
    out = torch.empty(len(keys), vocab_size, dtype=torch.float32, device=keys.device)
    for rows in row_chunks(len(keys), vocab_size, keys.device):
        bits = _fmix32_(_fmix32_(tok ^ row[rows]).bitwise_xor_(row[rows])).bitwise_right_shift_(8)
        torch.add(bits.to(torch.float32), 0.5, out=out[rows]).mul_(1.0 / (1 << 24))
    return out


def top_p_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Boolean mask of tokens outside the nucleus (smallest set with mass >= top_p)."""
    if top_p >= 1.0:
        return torch.zeros_like(logits, dtype=torch.bool)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    remove_sorted = mass_before >= top_p
    remove_sorted[..., 0] = False
    return torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)


def top_k_mask(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Boolean mask of tokens below the k-th largest logit (ties with it are kept, as in vLLM); 0: none."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return torch.zeros_like(logits, dtype=torch.bool)
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits < kth


def warp_logits(logits: torch.Tensor, temperature: float, top_p: float, top_k: int = 0) -> torch.Tensor:
    """Temperature, then top-k, then top-p over what top-k kept (vLLM's order): float32 scores with -inf
    outside the kept set."""
    scores = logits.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        scores = scores.masked_fill(top_k_mask(scores, top_k), float("-inf"))
    if top_p < 1.0:
        scores = scores.masked_fill(top_p_mask(scores, top_p), float("-inf"))
    return scores


def keyed_gumbel_sample(
    logits: torch.Tensor,
    keys: torch.Tensor,
    positions: torch.Tensor,
    temperature: float,
    top_p: float,
    top_k: int = 0,
) -> torch.Tensor:
    """One token per row: greedy when temperature == 0, else Gumbel-max over the warped scores."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = warp_logits(logits, temperature, top_p, top_k)
    token = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
    for rows in row_chunks(scores.shape[0], scores.shape[-1], scores.device):  # Gumbel G = -log(-log u)
        log_log = keyed_uniform(keys[rows], positions[rows], scores.shape[-1]).log_().neg_().log_()
        token[rows] = (scores[rows] - log_log).argmax(dim=-1)
    return token


def apply_presence_penalty(
    logits: torch.Tensor, generated: torch.Tensor, penalty: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Subtract `penalty` from tokens present in each row's generated ids ([B, T]; `valid` masks T)."""
    if penalty == 0 or generated.shape[1] == 0:
        return logits
    present = torch.zeros_like(logits, dtype=torch.bool)
    src = torch.ones_like(generated, dtype=torch.bool) if valid is None else valid
    present.scatter_(1, generated, src)
    return logits - penalty * present.to(logits.dtype)
