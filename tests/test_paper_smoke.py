"""`make paper-smoke`: every command block of docs/REPRODUCE.md, in order, on tiny-random with tiny sizes.

The commands run as written, in a scratch directory that holds what a user supplies: `data/` (toy stand-ins
for e1-verifiable, e1-proof, GPQA-Diamond and DeepScaleR), `configs/` (the repository's), and the hub models the page
names as local copies of tiny-random. The only changes are the flags `SMOKE` appends, which make every run
tiny (samples, lengths, steps, STaR's iterations, problems; the hf back-end instead of vLLM), and two that a
random model needs: every D_syn trace kept, and STaR's rationales accepted by a test verifier that passes
about half, since its answers are never correct. Then every file the page's figure map names must exist.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "REPRODUCE.md"
HUB_MODELS = ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-8B", "Qwen/Qwen3-4B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
SKIP_MARK = "# not run by paper-smoke"
TINY_RUN = ["--no-progress", "--device", "cpu"]
SMOKE = {
    "eval": [*TINY_RUN, "--n", "2", "--k", "1,2", "--max-tokens", "8", "--limit", "2", "--backend", "hf"],
    "generate": [*TINY_RUN, "--n", "2", "--max-tokens", "8", "--limit", "3", "--backend", "hf", "--select", "all"],
    "train": [*TINY_RUN, "--max-steps", "2"],
    "data hints": [*TINY_RUN, "--max-tokens", "8", "--explain-max-tokens", "8", "--backend", "hf"],
    "report": [],
    "data dedup": [],
    "data deepscaler": [],
    "data summary": [],
}
SAMPLING_TRAIN = ["--max-tokens", "8", "--backend", "hf", "--grade-workers", "0"]
ONLINE = ["--prompts-per-step", "2", "--group-size", "2", "--batch-size", "2"]
ONLINE_EVAL = ["--eval-every", "1", "--eval-n", "2", "--eval-limit", "1", "--eval-max-tokens", "4"]


def logical_lines(block: str) -> list[str]:
    """Backslash continuations joined, comments and blank lines dropped."""
    out, current = [], ""
    for raw in block.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    return out


def expand(line: str) -> list[str]:
    """`for X in A B; do BODY; done` (nestable) as the commands bash would run; other lines as they are."""
    m = re.fullmatch(r"for (\w+) in ([^;]+); do (.+); done", line)
    if not m:
        return [line]
    var, values, body = m.group(1), m.group(2).split(), m.group(3)
    out = []
    for value in values:
        out += expand(re.sub(rf"\$\{{{var}\}}|\${var}\b", value, body))
    return out


def page_commands(text: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        if block.lstrip().startswith(SKIP_MARK):
            continue
        for line in logical_lines(block):
            for command in expand(line):
                argv = shlex.split(command)
                assert argv[0] == "dail-harness", f"REPRODUCE.md runs only dail-harness commands: {command}"
                commands.append(argv[1:])
    return commands


def figure_files(text: str) -> list[str]:
    section = text.split("## Figure and table map", 1)[1]
    return sorted(set(re.findall(r"`(runs/figures/[^`]+\.png)`", section)))


def settings_of(argv: list[str]) -> dict:
    """The command's settings as its config file and flags give them (enough to choose the smoke flags)."""
    values: dict = {}
    if "--config" in argv:
        from dail_harness.options import PATH_OR_NAME, from_config_dir

        config = Path(argv[argv.index("--config") + 1])
        for key, value in (yaml.safe_load(config.read_text()) or {}).items():
            if isinstance(value, dict):  # a section: method: {name: grpo, ...}, eval: {task: ...}, sampling: {...}
                prefix = "eval_" if key == "eval" else "lora_" if key == "lora" else ""
                values.update({(key if k == "name" else prefix + k): v for k, v in value.items()})
            else:
                values[key] = value
        if "model" in values:  # as the command reads it: relative to the config file
            values["model"] = from_config_dir(values["model"], config.parent, PATH_OR_NAME)
    for i, a in enumerate(argv):
        if a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            values[a[2:].replace("-", "_")] = nxt if nxt and not nxt.startswith("--") else True
    return values


def smoke_flags(argv: list[str]) -> list[str]:
    command = " ".join(argv[:2]) if argv[0] == "data" else argv[0]
    flags = list(SMOKE[command])
    settings = settings_of(argv)
    if command == "eval" and settings.get("budgets"):  # each budget is its condition's limit: no --max-tokens
        at = flags.index("--max-tokens")
        flags = flags[:at] + flags[at + 2 :] + ["--budgets", "4,8", "--answer-tokens", "4"]
    if command == "report" and "k" in settings:
        flags += ["--k", "1,2"]  # the page's k (up to 128) are more than the smoke's 2 samples
    if command == "train":
        method = settings.get("method")
        if method in ("star", "grpo", "nurl"):
            flags += SAMPLING_TRAIN
        if method == "star":  # a random model's answers are never right: a test verifier accepts half of them
            flags += ["--reward", "coin", "--plugin-dir", str(ROOT / "tests" / "plugins")]
            if int(settings.get("iterations", 1)) > 2:  # STaR's own loop (63): two iterations show it
                flags += ["--iterations", "2"]
        if method in ("grpo", "nurl"):
            flags += ONLINE + (ONLINE_EVAL if settings.get("eval_task") else [])
    return flags


def toy_inputs(data: Path) -> None:
    from test_tasks import write_gpqa

    from dail_harness.dsyn.expert_data import toy_arithmetic

    data.mkdir()
    rows = [r.to_dict() for r in toy_arithmetic(6, seed=1)]
    (data / "e1-verifiable.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proofs = [{k: r[k] for k in ("problem_id", "problem", "solution")} for r in rows]  # proofs: no answers
    (data / "e1-proof.jsonl").write_text("".join(json.dumps(r) + "\n" for r in proofs))
    write_gpqa(data / "gpqa_diamond.csv")
    (data / "deepscaler.json").write_text(json.dumps(deepscaler_rows()))


def deepscaler_rows() -> list[dict]:
    """DeepScaleR-shaped rows (its published JSON list: problem, answer, solution), with what the real file has:
    `$...$` and boxed answers, and one row `data deepscaler` drops (an empty answer)."""
    rows = [
        {"problem": f"What is {a} + {b}?", "answer": f"${a + b}$", "solution": f"{a} + {b} = {a + b}."}
        for a, b in ((1, 2), (3, 4), (5, 6))
    ]
    rows.append({"problem": "What is 2 + 2?", "answer": "\\boxed{4}", "solution": "2 + 2 = 4."})
    rows.append({"problem": "What is 7 + 1?", "answer": "", "solution": "7 + 1 = 8."})
    return rows


def test_page_parser_expands_loops_and_continuations():
    block = "```bash\n# a comment\nfor a in x y; do for b in 1 2; do dail-harness eval --out r/$a-${b}; done; done\n"
    block += "dail-harness report r/x-1 \\\n  --no-plot\n```\n```bash\n" + SKIP_MARK + ": slow\ndail-harness x\n```\n"
    assert page_commands(block) == [
        ["eval", "--out", "r/x-1"],
        ["eval", "--out", "r/x-2"],
        ["eval", "--out", "r/y-1"],
        ["eval", "--out", "r/y-2"],
        ["report", "r/x-1", "--no-plot"],
    ]


@pytest.mark.slow
def test_every_pipeline_of_reproduce_md_runs_on_tiny_random(tmp_path, monkeypatch, cli):
    from dail_harness.models.loading import resolve_model

    text = PAGE.read_text()
    commands = page_commands(text)
    assert len(commands) > 40
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    toy_inputs(tmp_path / "data")
    tiny = Path(resolve_model("tiny-random"))
    for hub_id in HUB_MODELS:
        (tmp_path / hub_id).parent.mkdir(exist_ok=True)
        (tmp_path / hub_id).symlink_to(tiny)
    for argv in commands:
        settings = settings_of(argv)
        model = str(settings.get("model", ""))
        assert not model or model.startswith("runs/") or model in HUB_MODELS, f"unknown model {model}"
        code, out, err = cli(*argv, *smoke_flags(argv))
        assert code == 0, f"dail-harness {shlex.join(argv)}\n{out}\n{err}"
    files = figure_files(text)
    assert len(files) >= 15
    missing = [f for f in files if not (tmp_path / f).exists()]
    assert not missing, f"REPRODUCE.md names files that its commands did not write: {missing}"
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in files)
