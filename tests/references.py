"""Token-by-token reference rollouts, computed once per (model, request, sampling settings) in a test process.

Every variant of an engine (K, static or dynamic caches, fused contexts, batch size) must equal the same
reference, which is slow by design (two uncached forwards per token), so the tests share it across variants
instead of recomputing it for each. The key holds every setting the reference reads and none it ignores."""

from __future__ import annotations

import dataclasses

from dail_harness.rollout.base import RolloutConfig, RolloutRequest, RolloutResult
from dail_harness.rollout.reference import reference_authors_rollout, reference_rollout

ENGINE_ONLY = {"batch_size": 0, "draft_tokens": 1, "fuse_contexts": True, "static_cache": False, "compile": False}
_memo: dict[tuple, tuple[object, RolloutResult]] = {}


def reference(
    model, request: RolloutRequest, cfg: RolloutConfig, eos_ids: list[int], variant: str = ""
) -> RolloutResult:
    """The reference rollout of `cfg.proposal` (the paper's rule or the authors' top-20 scheme), memoized;
    `variant` names a change a test made to the model in place (it is the same object, with other outputs)."""
    rollout = reference_authors_rollout if cfg.proposal == "top20x5" else reference_rollout
    settings = dataclasses.replace(cfg, **ENGINE_ONLY)
    key = (id(model), request.row_id, tuple(request.student_ids), tuple(request.privileged_ids))
    key += (tuple(eos_ids), repr(settings), variant)
    if key not in _memo:  # the model is kept with its result, so its id is not reused while the entry lives
        _memo[key] = (model, rollout(model, request, cfg, eos_ids))
    return _memo[key][1]
