"""Every command of docs/SCALE.md: the launcher's own parser accepts its line (torchrun, accelerate launch), and
the dail-harness command, run with --dry-run under the variables that launcher would set for the world the line
asks for, plans that world (processes, nodes, devices per engine) without loading a model."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from test_paper_smoke import logical_lines

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "SCALE.md"
SHELL = {"$NODE_RANK": "0", "$MASTER_ADDR": "10.0.0.1"}


def option(argv: list[str], *names: str, default: str | None = None) -> str | None:
    for i, a in enumerate(argv):
        if a in names:
            return argv[i + 1]
    return default


def launches() -> list[tuple[str, list[str], list[str]]]:
    """(launcher, its arguments, the dail-harness arguments) of every command on the page."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S):
        for line in logical_lines(block):
            for var, value in SHELL.items():
                line = line.replace(var, value)
            argv = shlex.split(line)
            if argv[0] == "srun" and "torchrun" in argv:  # one torchrun per node: torchrun numbers the processes
                argv = argv[argv.index("torchrun") :]
            if argv[0] == "srun":
                at = argv.index("dail-harness")
                out.append(("srun", argv[1:at], argv[at + 1 :]))
            else:
                launcher = "torchrun" if argv[0] == "torchrun" else " ".join(argv[:2])
                at = argv.index("dail_harness")
                assert argv[at - 1] == "-m", line
                out.append((launcher, argv[len(launcher.split()) : at + 1], argv[at + 1 :]))
    return out


def world_of(launcher: str, args: list[str]) -> tuple[int, int]:
    """(processes in all, processes per node) that the launcher line starts."""
    if launcher == "torchrun":
        nodes = int(option(args, "--nnodes", default="1") or 1)
        per_node = int(option(args, "--nproc-per-node", "--nproc_per_node") or 1)
        return nodes * per_node, per_node
    if launcher == "accelerate launch":
        nodes = int(option(args, "--num_machines", default="1") or 1)
        total = int(option(args, "--num_processes") or 1)
        return total, total // nodes
    nodes = int(option(args, "--nodes", "-N", default="1") or 1)
    per_node = int(option(args, "--ntasks-per-node") or 1)
    return nodes * per_node, per_node


def test_the_page_has_every_launcher_and_job():
    found = launches()
    assert {launcher for launcher, _, _ in found} == {"torchrun", "accelerate launch", "srun"}
    assert {argv[0] for _, _, argv in found} == {"eval", "generate", "train"}
    methods = {option(argv, "--config") for _, _, argv in found if argv[0] == "train"}
    assert any("dail" in str(m) for m in methods) and any("grpo" in str(m) for m in methods)
    assert any(world_of(launcher, args)[0] > world_of(launcher, args)[1] for launcher, args, _ in found)  # multi-node


@pytest.mark.parametrize("launcher, args, argv", launches(), ids=lambda x: x if isinstance(x, str) else None)
def test_every_recipe_plans_the_world_its_launcher_starts(launcher, args, argv, cli, monkeypatch, tmp_path):
    if launcher == "torchrun":  # torchrun's own parser takes the line (it would take --n for its --nnodes)
        from torch.distributed.run import get_args_parser

        parsed = get_args_parser().parse_args([*args, *argv])
        assert parsed.module and parsed.training_script == "dail_harness" and parsed.training_script_args == argv
    elif launcher == "accelerate launch":
        from accelerate.commands.launch import launch_command_parser

        parsed = launch_command_parser().parse_args([*args, *argv])
        assert parsed.module and parsed.training_script == "dail_harness"
    world, per_node = world_of(launcher, args)
    if launcher == "srun":
        nodes = world // per_node
        env = {
            "SLURM_PROCID": "0",
            "SLURM_STEP_NUM_TASKS": str(world),
            "SLURM_STEP_TASKS_PER_NODE": f"{per_node}(x{nodes})",
        }
    else:
        env = {"RANK": "0", "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(per_node)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    expert = [
        {"problem_id": f"p{i}", "problem": f"{i} + {i}?", "solution": f"{2 * i}.", "answer": str(2 * i)}
        for i in range(64)  # the RL recipes take 64 prompts a step
    ]
    (tmp_path / "data" / "e1-verifiable.jsonl").write_text("".join(json.dumps(r) + "\n" for r in expert))
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # their paths resolve against their own directory
    (tmp_path / "runs").mkdir()
    dsyn = [{**r, "trace": r["solution"], "waypoints": [r["answer"]]} for r in expert]  # D_syn rows, as dail reads
    (tmp_path / "runs" / "dsyn-qwen2.5-7b-mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dsyn))
    before = set(tmp_path.rglob("*"))
    code, out, err = cli(*argv, "--dry-run")
    assert code == 0, err
    assert set(tmp_path.rglob("*")) == before  # nothing written
    lines = out.splitlines()
    if argv[0] == "train":
        assert lines[0].startswith(f"train ({'grpo' if 'grpo' in option(argv, '--config') else 'dail'}, "), lines
        assert f"launch: {world} process(es) = {world // per_node} node(s) x {per_node}, torchrun" in lines[2]
        assert len(lines) == 4 + world and lines[-1].endswith(f"cuda:{per_node - 1}")
        if "--fsdp" in argv:
            assert f"the policy sharded over the {world} processes (FSDP2" in lines[2]
        else:
            assert "one policy replica per process (DDP)" in lines[2]
        if option(argv, "--backend") == "vllm":  # GRPO: one colocated vLLM engine per rank
            assert "one vLLM engine in each process on its device (external launcher)" in lines[2]
        return
    tp = int(option(argv, "--tensor-parallel-size", default="1") or 1)
    assert lines[0].endswith(f"over {world} processes"), lines[0]
    assert f"{world // per_node} node(s) x {per_node}, {'srun' if launcher == 'srun' else 'torchrun'}" in lines[1]
    assert f"over {tp} device(s): {per_node * tp} devices per node" in lines[1]
    assert len(lines) == 3 + world
