"""A test-only verifier: a deterministic coin flip per completion (about half correct), so STaR keeps some
direct answers, rationalizes some, and drops the rest, whatever a random tiny model writes."""

import hashlib

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, Verifier


@registry.register("verifiers", "coin")
class Coin(Verifier):
    """Correct for about half of all completions (a hash of the text), whatever the gold answer."""

    def verify(self, completion, gold, finish_reason=None):
        heads = hashlib.sha256(completion.encode()).digest()[0] % 2 == 0
        return Verdict(heads, completion[:8], False)
