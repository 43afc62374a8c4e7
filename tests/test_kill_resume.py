"""kill -9 at several points of eval, generate and train, then a rerun: the result equals an uninterrupted
run's, with nothing lost and nothing duplicated. The points are drawn at random (seeded) from the run's
progress: the process is killed as soon as its output holds that many rows, wherever it is then."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
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


def kill_when(argv: list[str], watched: Path, rows: int, timeout: float = 300) -> bool:
    """Run `dail-harness ARGV` in a subprocess and SIGKILL it once `watched` has `rows` lines; False if it
    finished first."""
    cmd = [sys.executable, "-m", "dail_harness", *map(str, argv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if lines(watched) >= rows:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.wait()
    return False


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def points(total: int, seed: str) -> list[int]:
    return sorted(random.Random(seed).sample(range(1, total), POINTS))


def check_killed_runs(cli, argv, out_of, watched_of, total: int, compare, seed: str, tmp_path: Path) -> None:
    ref = tmp_path / "reference"
    code, _, err = cli(*argv, *out_of(ref))
    assert code == 0, err
    assert lines(watched_of(ref)) == total
    for k in points(total, seed):
        run = tmp_path / f"killed-at-{k}"
        assert kill_when([*argv, *out_of(run)], watched_of(run), k), f"the run ended before {k} rows"
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


@pytest.mark.slow
def test_eval_killed_at_random_points_resumes_to_the_same_samples(tmp_path, cli):
    def compare(ref, run):
        key = ("task", "problem_id", "temperature", "budget", "sample_index")
        assert key_rows(jsonl(run / "samples.jsonl"), key) == key_rows(jsonl(ref / "samples.jsonl"), key)
        a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
        assert a["pass_at_k_exact"] == b["pass_at_k_exact"] and a["num_problems"] == b["num_problems"]

    out = lambda d: ["--out", d]
    check_killed_runs(cli, EVAL, out, lambda d: d / "samples.jsonl", 24, compare, "eval", tmp_path)


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
    check_killed_runs(cli, GENERATE, out, watched, 12, compare, "generate", tmp_path)


@pytest.mark.slow
def test_train_killed_at_random_points_resumes_to_the_same_curve_and_adapter(tmp_path, cli):
    from safetensors.torch import load_file

    data = tmp_path / "dsyn.jsonl"
    dsyn = [{**r, "trace": r["solution"], "waypoints": [str(r["answer"])]} for r in EXPERT]
    data.write_text("".join(json.dumps(r) + "\n" for r in dsyn))

    def compare(ref, run):
        timing = ("tokens_per_s", "sampling_tokens_per_s", "update_tokens_per_s", "seconds")
        a, b = (key_rows(jsonl(d / "train_log.jsonl"), ("step",), timing) for d in (ref, run))
        assert list(a) == list(b)
        for step in a:
            assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-8), step
        wa, wb = (load_file(d / "adapter_model.safetensors") for d in (ref, run))
        assert wa.keys() == wb.keys()
        assert all(torch.allclose(wa[k], wb[k], rtol=1e-5, atol=1e-7) for k in wa)

    out = lambda d: ["--data", data, "--out", d]
    check_killed_runs(cli, TRAIN, out, lambda d: d / "train_log.jsonl", 12, compare, "train", tmp_path)
