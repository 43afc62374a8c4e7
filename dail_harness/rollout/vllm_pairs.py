"""The engine side of mixed-policy rollouts on vLLM: a batch-level logits processor that pairs requests.

Each trace runs as two requests in one engine: the student context and the privileged context. Before
sampling, vLLM hands every registered V1 logits processor the raw float32 logits of the whole batch (one
row per scheduled request). `PairedMixing` finds the two rows of each pair, applies the mixing rule of
`choose_tokens` to them (the same function the hf engine runs, with the same keyed draws) and forces both
rows to the chosen token with one-hot logits. Continuous batching, paged KV caches and prefix caching then
work as for any request.

vLLM does not promise to schedule two requests in lockstep (a token budget, chunked prefill or preemption
can leave one out of a step). A row whose partner is missing, or is at another position, or disagrees on
the last token is forced to the sentinel token instead: a stop id that the mixing rule never generates.
Both rows then stop, and the driver (rollout/vllm.py) keeps their common prefix and resubmits the pair from
there; keyed draws make the resumed pair produce the tokens an undisturbed pair would have.

Which tokens came from the student is recorded on the device (no host sync per step) and read once per
generate call through `collective_rpc("dail_take_accepted", ...)` (rollout/vllm_worker.py), which also works
when the engine runs in its own process.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

try:
    from vllm.v1.sample.logits_processor import LogitsProcessor
    from vllm.v1.sample.logits_processor.interface import MoveDirectionality
except ImportError:  # the registry imports every rollout module; without vLLM nothing here is ever built
    LogitsProcessor = object  # type: ignore[assignment,misc]
    MoveDirectionality = None  # type: ignore[assignment,misc]

from dail_harness.rollout.base import RolloutConfig, choose_tokens

EXTRA_ARGS_KEY = "dail_mixed"
STUDENT, PRIVILEGED, SOLO = "student", "privileged", "solo"


@dataclass(frozen=True)
class RowSpec:
    """What one request tells the processor (through `SamplingParams.extra_args[EXTRA_ARGS_KEY]`)."""

    pair: str
    """Unique per submission of a trace: both requests of a pair carry it."""
    role: str
    """student or privileged; solo: a request sampled alone by its own keyed draws (tau <= 0 or > 1)."""
    offset: int
    """Response tokens committed before this submission: the position of the first token it samples."""
    key_s: int
    key_p: int
    rule: tuple
    """(tau, temperature, top_p, top_k, suppressed ids, proposal, sentinel): rows with one rule batch together;
    sentinel -1: none (solo rows never need one)."""

    @property
    def sentinel(self) -> int:
        return int(self.rule[-1])

    def as_args(self) -> dict[str, Any]:
        return {EXTRA_ARGS_KEY: [self.pair, self.role, self.offset, self.key_s, self.key_p, list(self.rule)]}

    @classmethod
    def from_params(cls, params) -> RowSpec | None:
        raw = (getattr(params, "extra_args", None) or {}).get(EXTRA_ARGS_KEY)
        if raw is None:
            return None
        pair, role, offset, key_s, key_p, rule = raw
        rule[4] = tuple(rule[4])
        return cls(str(pair), str(role), int(offset), int(key_s), int(key_p), tuple(rule))


def rule_of(cfg: RolloutConfig, sentinel: int) -> tuple:
    """The per-request form of a rollout's mixing settings."""
    return (cfg.tau, cfg.temperature, cfg.top_p, cfg.top_k, tuple(cfg.suppress_token_ids), cfg.proposal, sentinel)


def keyed_sampling_args(key: int, temperature: float, top_p: float, top_k: int, row: str) -> dict[str, Any]:
    """`SamplingParams.extra_args` that make the processor draw one plain request's tokens with the harness's keyed
    Gumbel sampling (the hf back-end's draws): samples keyed by (seed, problem, sample index), not by engine."""
    return RowSpec(row, SOLO, 0, key, key, (0.0, temperature, top_p, top_k, (), "full", -1)).as_args()


def config_of(rule: tuple) -> RolloutConfig:
    """The mixing settings a rule stands for; the sentinel is suppressed like any forbidden token."""
    tau, temperature, top_p, top_k, suppressed, proposal, sentinel = rule
    return RolloutConfig(
        tau=tau,
        max_tokens=0,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=0,
        batch_size=0,
        proposal=proposal,
        suppress_token_ids=[*suppressed, *([sentinel] if sentinel >= 0 else [])],
    )


@dataclass
class StepGroup:
    """The rows of one step that share a rule, as device tensors: the pairs in sync, and the solo rows."""

    cfg: RolloutConfig
    student_rows: torch.Tensor
    privileged_rows: torch.Tensor
    pair_keys_s: torch.Tensor
    pair_keys_p: torch.Tensor
    pair_positions: torch.Tensor
    pair_slots: torch.Tensor
    solo_rows: torch.Tensor
    solo_keys: torch.Tensor
    solo_positions: torch.Tensor
    solo_role: str


class PairedMixing(LogitsProcessor):
    """The vLLM V1 logits processor (registered with `LLM(logits_processors=[PairedMixing])`); requests without
    the extra argument pass through untouched."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.device, self.pin = device, is_pin_memory
        self.rows: dict[int, tuple[RowSpec, list[int]]] = {}
        self.slots: dict[str, int] = {}
        self.free_slots: list[int] = []
        self.events: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        """(slot, position, accepted) of every pair token forced in sync, on the device."""
        self.groups: list[StepGroup] = []
        self.sentinel_rows = torch.empty(0, dtype=torch.long)
        self.sentinel_ids = torch.empty(0, dtype=torch.long)

    @classmethod
    def validate_params(cls, params) -> None:
        spec = RowSpec.from_params(params)
        if spec is None:
            return
        if spec.role not in (STUDENT, PRIVILEGED, SOLO) or params.n != 1:
            raise ValueError(f"{EXTRA_ARGS_KEY}: role {spec.role!r}, n {params.n} (one sample per paired request)")

    def is_argmax_invariant(self) -> bool:
        return False  # it replaces the logits: greedy requests must see it too

    def update_state(self, batch_update) -> None:
        if batch_update is not None:
            self._apply_batch_update(batch_update)
        self._plan_step()

    def _apply_batch_update(self, update) -> None:
        """Follow the persistent batch: removed, then added, then moved (vLLM's documented order)."""
        for index in update.removed:
            self.rows.pop(index, None)
        for index, params, _prompt, output_ids in update.added:
            spec = RowSpec.from_params(params)
            if spec is None:
                self.rows.pop(index, None)
                continue
            self.rows[index] = (spec, output_ids)
            if spec.role != SOLO and spec.pair not in self.slots:
                self.slots[spec.pair] = self.free_slots.pop() if self.free_slots else len(self.slots)
        for a, b, direction in update.moved:
            row_a, row_b = self.rows.pop(a, None), self.rows.pop(b, None)
            if row_a is not None:
                self.rows[b] = row_a
            if row_b is not None and direction == MoveDirectionality.SWAP:
                self.rows[a] = row_b

    def _plan_step(self) -> None:
        """Which rows pair up this step (on the host, from the live output lists), sent to the device once."""
        if not self.rows:  # plain requests only: nothing to plan, nothing to send to the device each step
            self.groups, self.sentinel_rows = [], self.sentinel_rows[:0]
            return
        by_pair: dict[str, dict[str, tuple[int, RowSpec, list[int]]]] = defaultdict(dict)
        for index, (spec, out) in self.rows.items():
            by_pair[spec.pair][spec.role] = (index, spec, out)
        pairs: dict[tuple, list] = defaultdict(list)
        solos: dict[tuple, list] = defaultdict(list)
        sentinels: list[tuple[int, int]] = []
        for members in by_pair.values():
            if SOLO in members:
                index, spec, out = members[SOLO]
                key = spec.key_s if spec.rule[0] <= 1 else spec.key_p
                solos[spec.rule].append((index, key, spec.offset + len(out)))
                continue
            s, p = members.get(STUDENT), members.get(PRIVILEGED)
            if s is not None and p is not None and in_step(s[2], p[2]):
                spec = s[1]
                position = spec.offset + len(s[2])
                pairs[spec.rule].append((s[0], p[0], spec.key_s, spec.key_p, position, self.slots[spec.pair]))
            else:
                sentinels += [(m[0], m[1].sentinel) for m in members.values()]
        self.groups = [self._group(rule, pairs.get(rule, []), solos.get(rule, [])) for rule in {*pairs, *solos}]
        self.sentinel_rows = self._tensor([r for r, _ in sentinels])
        self.sentinel_ids = self._tensor([t for _, t in sentinels])

    def _group(self, rule: tuple, pairs: list, solos: list) -> StepGroup:
        s_rows, p_rows, keys_s, keys_p, positions, slots = (self._tensor(c) for c in list(zip(*pairs)) or [()] * 6)
        solo_rows, solo_keys, solo_positions = (self._tensor(c) for c in list(zip(*solos)) or [()] * 3)
        return StepGroup(
            config_of(rule),
            s_rows,
            p_rows,
            keys_s,
            keys_p,
            positions,
            slots,
            solo_rows,
            solo_keys,
            solo_positions,
            solo_role=STUDENT if rule[0] <= 1 else PRIVILEGED,
        )

    def _tensor(self, values) -> torch.Tensor:
        t = torch.tensor(list(values), dtype=torch.long)
        if self.pin and self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.groups and not len(self.sentinel_rows):
            return logits
        rows, tokens = [self.sentinel_rows], [self.sentinel_ids]
        for g in self.groups:  # every choice reads the raw logits before any row is overwritten
            if len(g.student_rows):
                token, accepted = choose_tokens(
                    logits[g.student_rows],
                    logits[g.privileged_rows],
                    g.pair_keys_s,
                    g.pair_keys_p,
                    g.pair_positions,
                    g.cfg,
                )
                rows += [g.student_rows, g.privileged_rows]
                tokens += [token, token]
                self.events.append((g.pair_slots, g.pair_positions, accepted))
            if len(g.solo_rows):
                solo = logits[g.solo_rows]
                student = g.solo_role == STUDENT
                token, _ = choose_tokens(
                    solo if student else None,
                    None if student else solo,
                    g.solo_keys,
                    g.solo_keys,
                    g.solo_positions,
                    g.cfg,
                )
                rows.append(g.solo_rows)
                tokens.append(token)
        index, chosen = torch.cat(rows), torch.cat(tokens)
        logits[index] = float("-inf")
        logits[index, chosen] = 0.0
        return logits

    def take_accepted(self, limits: dict[str, tuple[int, int]]) -> dict[str, int]:
        """Student-accepted tokens per pair among positions [offset, end) (the part of the submission the driver
        kept); frees the pairs' slots and their records."""
        if not limits:
            return {}
        known = {pair: self.slots[pair] for pair in limits if pair in self.slots}
        counts = dict.fromkeys(limits, 0)
        if self.events and known:
            t, u, a = (torch.cat([e[k] for e in self.events]).cpu() for k in range(3))
            slots, positions, accepted = t, u, a
            for pair, slot in known.items():
                lo, hi = limits[pair]
                mine = (slots == slot) & (positions >= lo) & (positions < hi)
                counts[pair] = int(accepted[mine].sum())
            keep = ~torch.isin(slots, torch.tensor(list(known.values()), dtype=slots.dtype))
            self.events = [(t[keep].to(self.device), u[keep].to(self.device), a[keep].to(self.device))]
        for pair, slot in known.items():
            del self.slots[pair]
            self.free_slots.append(slot)
        return counts


def in_step(student_out: list[int], privileged_out: list[int]) -> bool:
    """Both rows of a pair are at the same position with the same last token (each earlier token was forced
    to both, so the same last token means the same trace)."""
    return len(student_out) == len(privileged_out) and (not student_out or student_out[-1] == privileged_out[-1])
