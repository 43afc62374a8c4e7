r"""Anchored answer extraction shared by the verifiers.

Only two anchors count: the last `\boxed{...}` / `\fbox{...}` (braces balanced, so a box cut off by
truncation is no answer), or an explicit final-answer statement ("The final answer is ...",
"Answer: ..."). A bare trailing number never counts: a truncated trace that happens to end on the gold
number must be graded incorrect. For thinking models only the text after the last `</think>` is
searched; an unclosed `<think>` means the model never answered.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
# "The final answer is X", "Final Answer: X", "the answer is X", "Answer: X" (start of line).
_STATEMENT_RE = re.compile(
    r"(?:final\s+answer|the\s+answer\s+is|^[ \t]*[*#]*[ \t]*answer)"
    r"[ \t]*\**[ \t]*(?:is\b)?[ \t]*[:：]?[ \t]*(?P<ans>[^\n]*)",
    re.IGNORECASE | re.MULTILINE,
)


def answer_region(text: str) -> str:
    """The part of a completion that may hold the final answer (after the thinking block)."""
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in text:
        return ""  # thinking never closed: no answer was given
    return text


def last_boxed(text: str) -> str | None:
    r"""Contents of the last complete `\boxed{...}` or `\fbox{...}` (or `\boxed 5`), else None."""
    matches = list(_BOX_RE.finditer(text))
    for m in reversed(matches):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
                j += 1
            continue  # unbalanced: truncated box, try an earlier complete one
        if i > m.end():  # `\boxed 5` form: up to whitespace or `$`
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def final_statement(text: str, *, truncated: bool = False) -> str | None:
    """The answer in the last explicit final-answer statement, else None.

    When the completion was truncated (`finish_reason == "length"`) a statement that runs to the very
    end of the text may itself be cut off, so it is not trusted.
    """
    last = None
    for m in _STATEMENT_RE.finditer(text):
        ans = m.group("ans")
        if truncated and m.end() == len(text.rstrip("\n")) and not text.endswith("\n"):
            continue
        ans = ans.strip().lstrip(":：").strip().strip("*").strip()
        ans = re.sub(r"[.。]\s*$", "", ans).strip()
        if ans:
            last = ans
    return last


def extract_answer(completion: str, *, finish_reason: str | None = None) -> str | None:
    """Apply the anchors in order: last box in the answer region, then a final-answer statement."""
    region = answer_region(completion)
    boxed = last_boxed(region)
    if boxed is not None and boxed != "":
        return boxed
    return final_statement(region, truncated=finish_reason == "length")


def strip_math_delimiters(s: str) -> str:
    """Remove surrounding `$...$`, `\\(...\\)`, `\\[...\\]` and a trailing period."""
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s.rstrip(".").strip()


def normalize_text(s: str) -> str:
    """Loose string form used for the string-equality fallback."""
    s = strip_math_delimiters(s)
    s = re.sub(r"\\(?:left|right|displaystyle|,|;|!|quad|qquad)", "", s)
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\s+", "", s).rstrip(".").lower()
    return s
