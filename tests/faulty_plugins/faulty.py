"""Test-only verifiers that misbehave the ways a real grader can: one kills its process, one never returns."""

import os
import time

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, Verifier


@registry.register("verifiers", "crashes")
class Crashes(Verifier):
    """Ends the grading process on the spot (as an out-of-memory kill or a segfault in a native library would)."""

    def verify(self, completion, gold, finish_reason=None):
        os._exit(3)


@registry.register("verifiers", "hangs")
class Hangs(Verifier):
    """Never returns (as sympy can on a pathological expression)."""

    def verify(self, completion, gold, finish_reason=None):
        while True:
            time.sleep(1)
        return Verdict(False, None, True)
