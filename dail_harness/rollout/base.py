"""What every mixed-policy rollout engine shares: settings, requests and results, the keyed roles, the
commit step that appends a round's tokens to a trace, and the adaptive draft length.

The definition (paper section 2.1): token i is t ~ M(.|x, r<i) from the student; it is kept if
M_PS(t|x, s, r<i) >= tau, otherwise r_i ~ M_PS(.|x, s, r<i). Engines are registered under
"rollouts" by the name of the sampling back-end they run on (`hf`, `vllm`) and built from a loaded
back-end with `from_backend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dail_harness.sampling import stable_key


@dataclass
class RolloutConfig:
    """Settings of a mixed-policy rollout."""

    tau: float
    """Keep the student's token when the privileged probability of it is >= tau (0: pure student;
    > 1: pure privileged student). The paper uses 0.8."""
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    batch_size: int
    top_k: int = 0
    """Both distributions' draws keep only their k most likely tokens (0: all); the acceptance test reads the
    privileged student's raw probability, as before."""
    draft_tokens: int = 1
    """K: tokens the student drafts per verification pass (1 = token by token, in lockstep;
    0 = adaptive: each round picks the K that maximises expected tokens per forward pass)."""
    fuse_contexts: bool = True
    """With K = 1: student and privileged rows share each forward pass (one token per pass). False:
    one forward per context per token, the authors' scheme."""
    proposal: str = "full"
    """How the student proposes a token: "full" = one draw from its (tempered, top-p) distribution, the paper's
    rule; "top20x5" = the authors' code: up to 5 draws from its top-20 at temperature 1, the first whose
    privileged probability is >= tau and that is in the privileged top-20 is kept, else a draw from the
    privileged top-20 (their vLLM log-probs made temperature and top-p have no effect). Token by token only."""
    suppress_token_ids: list[int] = field(default_factory=list)
    """Never generated (e.g. `</think>` for thinking models, as in the authors' setup)."""
    static_cache: bool = False
    """Fixed-shape decoding: static KV caches of fixed capacity, a fixed-size mask, rows kept in the
    batch until all finish; the draft ([B, 1]) and verify ([B, K+1]) steps then have fixed shapes."""
    compile: bool = False
    """With static_cache: torch.compile the decode forward (mode reduce-overhead: CUDA graphs on GPU).
    Batches are padded to batch_size and cache capacities rounded up, so one graph serves every batch."""


@dataclass
class RolloutRequest:
    row_id: str
    """Stable id of this rollout (problem id and sample index): keys its randomness."""
    student_ids: list[int]
    privileged_ids: list[int]


@dataclass
class RolloutResult:
    row_id: str
    token_ids: list[int]
    student_tokens: int
    """Tokens drafted by the student and accepted."""
    privileged_tokens: int
    """Tokens sampled from the privileged student (rejections)."""
    finish_reason: str


MAX_ADAPTIVE_K = 16
CAPACITY_BUCKET = 256  # static cache lengths are rounded up to this, so batches share compiled graphs


COMPILED_DRAFT_LENGTHS = (1, 2, 4, 8, 16)  # adaptive K under --compile: 5 verify graphs, not 16


def best_draft_length(p: float, choices=range(1, MAX_ADAPTIVE_K + 1)) -> int:
    """K (from `choices`) maximising committed tokens per forward pass when each draft is accepted with
    probability p.

    A round costs K student forwards and one verify forward; it commits the accepted prefix
    (sum_j p^j) plus one resampled token unless all K were accepted (1 - p^K).
    """
    p = min(max(p, 0.0), 0.999)

    def rate(k: int) -> float:
        return (sum(p**j for j in range(1, k + 1)) + 1 - p**k) / (k + 1)

    return max(choices, key=rate)


def role_keys(seed: int, row_id: str) -> tuple[int, int]:
    return stable_key("mixed", "student", seed, row_id), stable_key("mixed", "privileged", seed, row_id)


def suppress(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    if ids:
        logits = logits.clone()
        logits[..., ids] = float("-inf")
    return logits


@dataclass
class Trace:
    """One rollout in progress: its tokens, where they came from, and why it ended."""

    row_id: str
    tokens: list[int] = field(default_factory=list)
    student_tokens: int = 0
    privileged_tokens: int = 0
    finish_reason: str = "length"

    def finished(self, max_tokens: int) -> bool:
        return self.finish_reason == "stop" or len(self.tokens) >= max_tokens

    def commit(self, tokens: list[int], accepted: int, max_tokens: int, eos_ids) -> list[int]:
        """Append a round's tokens (the first `accepted` drafted by the student, the rest sampled from the
        privileged student), cut at `max_tokens` and after the first end-of-sequence token; returns the
        tokens kept."""
        kept = tokens[: max(0, max_tokens - len(self.tokens))]
        stop = next((k for k, t in enumerate(kept) if t in eos_ids), None)
        if stop is not None:
            kept = kept[: stop + 1]
            self.finish_reason = "stop"
        from_student = min(accepted, len(kept))
        self.student_tokens += from_student
        self.privileged_tokens += len(kept) - from_student
        self.tokens.extend(kept)
        return kept

    def result(self) -> RolloutResult:
        return RolloutResult(self.row_id, self.tokens, self.student_tokens, self.privileged_tokens, self.finish_reason)


class DraftLength:
    """The draft length K of each round: fixed, or adaptive (`draft_tokens` 0), re-chosen after every round
    as the K that maximises committed tokens per forward pass at the running acceptance rate."""

    def __init__(self, draft_tokens: int, choices=range(1, MAX_ADAPTIVE_K + 1)):
        self.adaptive = draft_tokens <= 0
        self.k = 4 if self.adaptive else draft_tokens
        self.choices = choices
        self.examined, self.accepted = 1.0, 0.8  # a prior: acceptance 0.8

    def observe(self, examined: float, accepted: float) -> None:
        """A round's drafts examined by the verifier (accepted ones plus the first rejected) and accepted."""
        if self.adaptive:
            self.examined = 0.9 * self.examined + examined
            self.accepted = 0.9 * self.accepted + accepted
            self.k = best_draft_length(self.accepted / max(self.examined, 1e-9), self.choices)


AUTHORS_TOP_K, AUTHORS_DRAWS = 20, 5


def attempt_keys(keys: torch.Tensor, attempt: int) -> torch.Tensor:
    """Independent randomness for the student's `attempt`-th draw at a position (the authors' scheme)."""
    return (keys + attempt * 0x9E3779B97F4A7C1) & 0x7FFFFFFFFFFFFFFF


def top_k_logits(logits: torch.Tensor, k: int = AUTHORS_TOP_K) -> torch.Tensor:
    """The logits with everything outside each row's top-k set to -inf."""
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def authors_proposal(
    s_logits: torch.Tensor,
    p_logits: torch.Tensor,
    key_s: torch.Tensor,
    key_p: torch.Tensor,
    positions: torch.Tensor,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row by the authors' rule (see `RolloutConfig.proposal`); logits already suppressed.
    Returns (token, accepted from the student)."""
    from dail_harness.sampling import keyed_gumbel_sample

    s_top, p_top = top_k_logits(s_logits), top_k_logits(p_logits)
    p_probs = torch.softmax(p_logits.float(), dim=-1)  # raw, over the full vocabulary (vLLM's log-probs)
    in_p_top = torch.isfinite(p_top)
    token = torch.zeros(s_logits.shape[0], dtype=torch.long, device=s_logits.device)
    accepted = torch.zeros_like(token, dtype=torch.bool)
    for attempt in range(AUTHORS_DRAWS):
        draw = keyed_gumbel_sample(s_top, attempt_keys(key_s, attempt), positions, 1.0, 1.0)
        ok = ~accepted & (p_probs.gather(1, draw[:, None])[:, 0] >= tau) & in_p_top.gather(1, draw[:, None])[:, 0]
        token = torch.where(ok, draw, token)
        accepted |= ok
    fallback = keyed_gumbel_sample(p_top, key_p, positions, 1.0, 1.0)
    return torch.where(accepted, token, fallback), accepted


def choose_tokens(
    s_logits: torch.Tensor | None,
    p_logits: torch.Tensor | None,
    key_s: torch.Tensor,
    key_p: torch.Tensor,
    positions: torch.Tensor,
    cfg: RolloutConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One position of a batch of traces: (token, from the student?) per row, from the student's and the
    privileged student's raw logits at that position (either may be None: tau <= 0 needs no privileged row,
    tau > 1 no student row). The student proposes, the privileged student keeps the token when its probability
    is >= tau and otherwise resamples; or the authors' top-20 proposal with `proposal="top20x5"`. Every engine
    that runs token by token (hf lockstep, the vLLM logits processor) calls this, so they share one rule."""
    from dail_harness.sampling import keyed_gumbel_sample

    def sample(logits, keys):
        return keyed_gumbel_sample(
            suppress(logits, cfg.suppress_token_ids), keys, positions, cfg.temperature, cfg.top_p, cfg.top_k
        )

    rows, dev = len(positions), positions.device
    if cfg.proposal == "top20x5":
        assert s_logits is not None and p_logits is not None
        ids = cfg.suppress_token_ids
        return authors_proposal(suppress(s_logits, ids), suppress(p_logits, ids), key_s, key_p, positions, cfg.tau)
    if p_logits is None:
        assert s_logits is not None
        return sample(s_logits, key_s), torch.ones(rows, dtype=torch.bool, device=dev)
    if s_logits is None:
        return sample(p_logits, key_p), torch.zeros(rows, dtype=torch.bool, device=dev)
    token = sample(s_logits, key_s)
    probs = torch.softmax(suppress(p_logits, cfg.suppress_token_ids), dim=-1)
    accepted = probs.gather(1, token[:, None])[:, 0] >= cfg.tau
    if dev.type != "cpu":  # one dense draw for every row: no host sync on an accelerator
        return torch.where(accepted, token, sample(p_logits, key_p)), accepted
    rejected = torch.nonzero(~accepted).flatten()  # on a CPU, draw only the rows that need it
    if len(rejected):
        token = token.clone()
        token[rejected] = keyed_gumbel_sample(
            suppress(p_logits[rejected], cfg.suppress_token_ids),
            key_p[rejected],
            positions[rejected],
            cfg.temperature,
            cfg.top_p,
            cfg.top_k,
        )
    return token, accepted
