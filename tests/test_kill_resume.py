"""kill -9 (and a terminal's ctrl-C) at several points of eval, generate and train, then a rerun: the result
equals an uninterrupted run's, with nothing lost and nothing duplicated. The points are drawn at random
(seeded) from the run's progress: the process is killed as soon as its output holds that many rows, wherever
it is then. A ctrl-C goes to the whole process group, as a terminal sends it, grading workers included."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

EXPERT = [
    {"problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i}.", "answer": str(2 * i)}
    for i in range(6)
]
RUN = ["--no-progress", "--device", "cpu"]
EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--limit", "6", "--n", "4", "--max-tokens", "24"]
EVAL += ["--batch-size", "2", "--grade-workers", "0", *RUN]
GENERATE = ["generate", "--model", "tiny-random", "--n", "2", "--max-tokens", "24", "--batch-size", "2"]
GENERATE += ["--grade-workers", "0", *RUN]
TRAIN = ["train", "--method", "dail", "--model", "tiny-random", "--epochs", "2", "--grad-accum", "1"]
TRAIN += ["--save-every", "1", "--warmup-steps", "1", *RUN]
POINTS = 3


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


INTERRUPTED = "interrupted: rerun the same command to resume\n"


def default_sigint() -> None:
    """In the child, before exec: SIGINT handled as in a terminal. A suite started in the background (nohup,
    `cmd &` in a script) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_when(argv: list[str], watched: Path, rows: int, sig: int = signal.SIGKILL, timeout: float = 300):
    """Run `dail-harness ARGV` in a subprocess and send `sig` to its process group once `watched` has `rows`
    lines; its (exit code, stderr), or None if it finished first."""
    cmd = [sys.executable, "-m", "dail_harness", *map(str, argv)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, preexec_fn=default_sigint
        )
        deadline = time.monotonic() + timeout
        sent = False
        while proc.poll() is None and time.monotonic() < deadline:
            if lines(watched) >= rows:
                os.killpg(proc.pid, sig)
                sent = True
                break
            time.sleep(0.01)
        code = proc.wait()
        err.seek(0)
        return (code, err.read().decode()) if sent else None


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def points(total: int, seed: str, count: int = POINTS) -> list[int]:
    return sorted(random.Random(seed).sample(range(1, total), count))


def check_killed_runs(
    cli,
    argv,
    out_of,
    watched_of,
    total: int,
    compare,
    seed: str,
    tmp_path: Path,
    sig: int = signal.SIGKILL,
    count: int | None = None,
) -> None:
    """The reference run, then a run killed with `sig` at each seeded point and rerun: equal to the reference.
    A ctrl-C (SIGINT) must end with exit code 130 and exactly one line on stderr (no worker tracebacks)."""
    ref = tmp_path / "reference"
    code, _, err = cli(*argv, *out_of(ref))
    assert code == 0, err
    assert lines(watched_of(ref)) == total
    count = count or (POINTS if sig == signal.SIGKILL else 1)  # one ctrl-C point: the suite's time
    for k in points(total, seed, count):
        run = tmp_path / f"killed-at-{k}"
        ended = kill_when([*argv, *out_of(run)], watched_of(run), k, sig)
        assert ended is not None, f"the run ended before {k} rows"
        if sig == signal.SIGINT:  # 130 also says it stopped before the end (all rows may be in, not the summary)
            assert ended == (130, INTERRUPTED)
        else:
            assert lines(watched_of(run)) < total
        code, _, err = cli(*argv, *out_of(run))  # the rerun resumes
        assert code == 0, err
        compare(ref, run)


def key_rows(rows: list[dict], key: tuple[str, ...], drop: tuple[str, ...] = ()) -> dict:
    out = {}
    for r in rows:
        k = tuple(r[f] for f in key)
        assert k not in out, f"duplicated row {k}"
        out[k] = {f: v for f, v in r.items() if f not in drop}
    return out


def same_samples(ref: Path, run: Path) -> None:
    key = ("task", "problem_id", "temperature", "budget", "sample_index")
    assert key_rows(jsonl(run / "samples.jsonl"), key) == key_rows(jsonl(ref / "samples.jsonl"), key)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
    assert a["pass_at_k_exact"] == b["pass_at_k_exact"] and a["num_problems"] == b["num_problems"]


def same_training(ref: Path, run: Path) -> None:
    from safetensors.torch import load_file

    timing = ("tokens_per_s", "sampling_tokens_per_s", "update_tokens_per_s", "seconds")
    a, b = (key_rows(jsonl(d / "train_log.jsonl"), ("step",), timing) for d in (ref, run))
    assert list(a) == list(b)
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-8), step
    wa, wb = (load_file(d / "adapter_model.safetensors") for d in (ref, run))
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-5, atol=1e-7) for k in wa)


@pytest.mark.slow
def test_eval_killed_at_random_points_resumes_to_the_same_samples(tmp_path, cli):
    out = lambda d: ["--out", d]
    check_killed_runs(cli, EVAL, out, lambda d: d / "samples.jsonl", 24, same_samples, "eval", tmp_path, count=1)


@pytest.mark.slow
def test_eval_interrupted_by_ctrl_c_exits_130_quietly_and_resumes(tmp_path, cli):
    """With 2 grading workers in the terminal's process group: they must not print tracebacks."""
    argv = [*EVAL, "--grade-workers", "2"]  # the last --grade-workers wins
    out = lambda d: ["--out", d]
    watched = lambda d: d / "samples.jsonl"
    check_killed_runs(cli, argv, out, watched, 24, same_samples, "ctrl-c", tmp_path, signal.SIGINT)


@pytest.mark.slow
def test_generate_killed_at_random_points_resumes_to_the_same_traces(tmp_path, cli):
    data = tmp_path / "expert.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EXPERT))

    def compare(ref, run):
        key = ("problem_id", "sample_index")
        traces = lambda d: jsonl(Path(f"{d}.jsonl.traces.jsonl"))
        assert key_rows(traces(run), key) == key_rows(traces(ref), key)
        assert jsonl(Path(f"{run}.jsonl")) == jsonl(Path(f"{ref}.jsonl"))  # the same selection

    out = lambda d: ["--data", data, "--out", f"{d}.jsonl"]
    watched = lambda d: Path(f"{d}.jsonl.traces.jsonl")
    check_killed_runs(cli, GENERATE, out, watched, 12, compare, "generate", tmp_path, count=1)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_train_killed_at_random_points_resumes_to_the_same_curve_and_adapter(tmp_path, cli, sig):
    data = tmp_path / "dsyn.jsonl"
    dsyn = [{**r, "trace": r["solution"], "waypoints": [str(r["answer"])]} for r in EXPERT]
    data.write_text("".join(json.dumps(r) + "\n" for r in dsyn))
    out = lambda d: ["--data", data, "--out", d]
    seed = "train" if sig == signal.SIGKILL else "ctrl-c"
    watched = lambda d: d / "train_log.jsonl"
    check_killed_runs(
        cli, TRAIN, out, watched, 12, same_training, seed, tmp_path, sig, count=2 if sig == signal.SIGKILL else 1
    )
