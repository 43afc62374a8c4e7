"""Answer verifiers (integer, math, choice): anchored extraction, then an equivalence check.

Each verifier is a function `(completion, gold, finish_reason) -> Verdict`, registered under the
answer type it grades. Run them through `dail_harness.eval.grading` (worker processes, hard timeouts).
"""

from dail_harness.verifiers.base import Verdict

__all__ = ["Verdict"]
