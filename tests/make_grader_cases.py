"""Writes tests/data/grader_cases.jsonl: hand-labelled grading cases (run once; the file is committed)."""

import json
from pathlib import Path

B = "\\boxed"
NOANS = "<no answer>"  # expected: nothing extracted
cases = [
    # --- integer (AIME-style) ---
    ("The answer is " + B + "{204}.", "204", "integer", None, True, "204"),
    (B + "{033}", "33", "integer", None, True, "033"),
    (B + "{33}", "033", "integer", None, True, "33"),
    ("So the total is " + B + "{33,124,147}.", "33124147", "integer", None, True, "33,124,147"),
    (B + "{33\\,124\\,147}", "33124147", "integer", None, True, None),
    (B + "{1{,}000}", "1000", "integer", None, True, None),
    ("Final Answer: " + B + "{45^\\circ}", "45", "integer", None, True, None),
    (B + "{45^{\\circ}}", "45", "integer", None, True, None),
    (B + "{204 \\text{ minutes}}", "204", "integer", None, True, None),
    ("The final answer is 204 minutes.", "204", "integer", None, True, "204 minutes"),
    (B + "{\\$18}", "18", "integer", None, True, None),
    (B + "{x = 12}", "12", "integer", None, True, None),
    (B + "{12.0}", "12", "integer", None, True, None),
    (B + "{2^{10}}", "1024", "integer", None, True, None),
    (B + "{-7}", "-7", "integer", None, True, None),
    (B + "{70}", "71", "integer", None, False, "70"),
    ("First " + B + "{12} then correcting myself " + B + "{13}", "13", "integer", None, True, "13"),
    ("First " + B + "{13} then correcting myself " + B + "{12}", "13", "integer", None, False, "12"),
    ("... so we get 1000 + 24 = 204", "204", "integer", None, False, NOANS),  # trailing number only
    ("Let me compute: the sum is 20", "204", "integer", "length", False, NOANS),  # truncated
    ("We have " + B + "{20", "204", "integer", "length", False, NOANS),  # truncated inside the box
    ("The final answer is 20", "204", "integer", "length", False, NOANS),  # statement cut by truncation
    ("The final answer is 204", "204", "integer", "stop", True, "204"),  # complete (EOS) statement
    ("<think>the answer is " + B + "{204}", "204", "integer", "length", False, NOANS),  # unclosed think
    ("<think>maybe " + B + "{12}</think>The answer is " + B + "{204}.", "204", "integer", None, True, "204"),
    ("<think>maybe " + B + "{204}</think>So, I am not sure.", "204", "integer", None, False, NOANS),
    ("\\fbox{588}", "588", "integer", None, True, "588"),
    ("$" + B + " 7$", "7", "integer", None, True, "7"),
    ("**Answer:** 42", "42", "integer", None, True, "42"),
    ("## Final Answer\nThe final answer is $\\boxed{10}$", "10", "integer", None, True, "10"),
    (B + "{1,2}", "12", "integer", None, False, "1,2"),
    ("", "0", "integer", None, False, NOANS),
    (B + "{240}", "204", "integer", None, False, "240"),
    (B + "{33124146}", "33124147", "integer", None, False, "33124146"),
    (B + "{1000}", "100", "integer", None, False, "1000"),
    (B + "{0}", "000", "integer", None, True, "0"),
    # --- math (symbolic) ---
    (B + "{\\frac{1}{2}}", "0.5", "math", None, True, None),
    (B + "{0.5}", "\\frac12", "math", None, True, None),
    (B + "{\\dfrac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", "math", None, True, None),
    (B + "{(x+1)^2}", "x^2+2x+1", "math", None, True, None),
    (B + "{x^2+2x+1}", "(x+1)^2", "math", None, True, None),
    (B + "{2\\sqrt{2}}", "\\sqrt{8}", "math", None, True, None),
    (B + "{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", "math", None, True, None),
    (B + "{\\pi/2}", "\\frac{\\pi}{2}", "math", None, True, None),
    (B + "{\\frac{\\pi}{3}}", "\\frac{\\pi}{2}", "math", None, False, None),
    (B + "{10\\%}", "10", "math", None, True, None),
    (B + "{[1, 3]}", "[1,3]", "math", None, True, None),
    (B + "{(1, 3)}", "[1,3]", "math", None, False, None),
    (B + "{3, 5}", "5, 3", "math", None, True, None),
    (B + "{\\text{Evelyn}}", "\\text{Evelyn}", "math", None, True, None),
    (B + "{\\text{Bob}}", "\\text{Evelyn}", "math", None, False, None),
    ("The final answer is $\\frac{14}{3}$.", "\\frac{14}{3}", "math", None, True, None),
    ("so x = 14/3 in the end", "\\frac{14}{3}", "math", None, False, NOANS),  # no anchor
    (B + "{\\frac{14}{3}", "\\frac{14}{3}", "math", "length", False, NOANS),  # truncated box
    (B + "{2^{u-2}}", "$2^{u-2}$", "math", None, True, None),
    (
        B + "{\\lfloor \\log_2 a \\rfloor + 1}",
        "$\\left\\lfloor \\log_{2}a\\right\\rfloor +1$.",
        "math",
        None,
        True,
        None,
    ),
    (B + "{1 - 2x}", "-2x + 1", "math", None, True, None),
    (B + "{1 + 2x}", "-2x + 1", "math", None, False, None),
    (B + "{-\\frac{2}{3}}", "-\\frac23", "math", None, True, None),
    (B + "{6}", "6", "math", None, True, "6"),
    (B + "{0.33}", "\\frac{1}{3}", "math", None, False, "0.33"),
    (B + "{x^3}", "x^2", "math", None, False, "x^3"),
    (B + "{\\sqrt{2}}", "2", "math", None, False, None),
    ("<think>" + B + "{6}", "6", "math", "length", False, NOANS),
    # --- choice ---
    ("Answer: C", "C", "choice", None, True, "C"),
    ("Answer: (B)", "C", "choice", None, False, "B"),
    ("The answer is (D).", "D", "choice", None, True, "D"),
    (B + "{A}", "A", "choice", None, True, "A"),
    (B + "{\\text{B}}", "B", "choice", None, True, "B"),
    ("**Answer: C**", "C", "choice", None, True, "C"),
    ("The final answer is C) 42 eV", "C", "choice", None, True, "C"),
    ("Let me think about options A and B. Option C seems", "C", "choice", "length", False, NOANS),
    ("answer: d", "D", "choice", None, True, "D"),
    (B + "{A}", "B", "choice", None, False, "A"),
    ("Answer: E", "E", "choice", None, False, NOANS),  # E is not a choice
    ("Answer: A\n...wait, reconsidering.\nAnswer: B", "B", "choice", None, True, "B"),
    ("<think>Answer: A</think>Answer: B", "A", "choice", None, False, "B"),
]
path = Path(__file__).parent / "data" / "grader_cases.jsonl"
with open(path, "w") as f:
    for completion, gold, at, fr, correct, extracted in cases:
        row = {
            "completion": completion,
            "gold": gold,
            "answer_type": at,
            "correct": correct,
            "no_answer": extracted == NOANS,
        }
        if fr:
            row["finish_reason"] = fr
        if extracted is not None:
            row["extracted"] = None if extracted == NOANS else extracted
        f.write(json.dumps(row) + "\n")
print(len(cases), "cases")
