"""Which process of a launched job this is, and which local devices its engine takes.

torchrun and `accelerate launch` set RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; srun sets SLURM_PROCID,
SLURM_LOCALID and its step's SLURM_STEP_NUM_TASKS and SLURM_STEP_TASKS_PER_NODE. A batch script's own commands
(not started by srun) also see SLURM_PROCID=0 and the job's SLURM_NTASKS, but no step variables: they are one
process. torchrun's variables win: under srun with one task per node that starts torchrun, the node's torchrun
numbers the processes.

Placement: with T devices per engine (vLLM's tensor parallelism), local process l takes local devices
l*T .. l*T+T-1, so a node with G GPUs runs G/T processes (`torchrun --nproc-per-node G/T`), W/T engines in all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from dail_harness.errors import HarnessError


@dataclass(frozen=True)
class Launch:
    """This process's place in a launched job (one process when nothing launched it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    launcher: str = "none"

    @property
    def launched(self) -> bool:
        return self.world > 1

    @property
    def node(self) -> int:
        return self.rank // self.local_world

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world} (node {self.node}, local rank {self.local_rank}, {self.launcher})"


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name, "").strip()
    if not value:
        if default is None:
            raise HarnessError(f"launcher environment: {name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise HarnessError(f"launcher environment: {name}={value!r} is not an integer") from None


def _slurm_tasks_per_node(env: Mapping[str, str], world: int) -> int:
    """The first count of the step's SLURM_STEP_TASKS_PER_NODE ('4(x2),3'), else SLURM_NTASKS_PER_NODE, else the
    step's tasks over its nodes."""
    match = re.match(r"\s*(\d+)", env.get("SLURM_STEP_TASKS_PER_NODE", ""))
    if match:
        return int(match.group(1))
    if env.get("SLURM_NTASKS_PER_NODE", "").strip():
        return _int(env, "SLURM_NTASKS_PER_NODE")
    nodes = _int(env, "SLURM_STEP_NUM_NODES", _int(env, "SLURM_NNODES", 1))
    return max(1, world // max(1, nodes))


def detect(env: Mapping[str, str] | None = None) -> Launch:
    """The launch this process belongs to, from the launcher's environment variables."""
    env = os.environ if env is None else env
    if env.get("WORLD_SIZE", "").strip():
        world = _int(env, "WORLD_SIZE")
        rank = _int(env, "RANK", 0 if world == 1 else None)
        local_world = _int(env, "LOCAL_WORLD_SIZE", world)
        launch = Launch(rank, world, _int(env, "LOCAL_RANK", rank % local_world), local_world, "torchrun")
    elif env.get("SLURM_STEP_NUM_TASKS", "").strip() and env.get("SLURM_PROCID", "").strip():
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        local_world = _slurm_tasks_per_node(env, world)
        launch = Launch(_int(env, "SLURM_PROCID"), world, _int(env, "SLURM_LOCALID", 0), local_world, "srun")
    else:
        return Launch()
    if world < 1 or not 0 <= launch.rank < world:
        raise HarnessError(f"launcher environment: rank {launch.rank} is not in 0..{world - 1} (world size {world})")
    if not 0 <= launch.local_rank < launch.local_world:
        raise HarnessError(
            f"launcher environment: local rank {launch.local_rank} is not below the {launch.local_world} "
            "processes per node"
        )
    return launch


_current: Launch | None = None


@contextmanager
def remembered() -> Iterator[Launch]:
    """Read the launch from the environment once, for one command: engines change the environment after they
    start (vLLM sets WORLD_SIZE, LOCAL_RANK ... for its own workers), and `current()` must keep answering with
    what the launcher said. Every command runs inside this."""
    global _current
    before, _current = _current, detect()
    try:
        yield _current
    finally:
        _current = before


def current() -> Launch:
    """The launch this command started in (read at its start, see `remembered`; read now outside a command)."""
    return _current if _current is not None else detect()


def refuse_manual_shard(shard: tuple[int, int] | None, launch: Launch) -> None:
    """`--shard` under a launcher would have every process draw the same shard: the processes are the shards."""
    if shard is not None:
        raise HarnessError(
            f"--shard {shard[0]}/{shard[1]} under a launcher of {launch.world} processes: each process "
            "would draw the same shard; leave --shard out (the processes are the shards)"
        )


def local_devices(local_rank: int, tensor_parallel_size: int) -> list[int]:
    """The local device indices of local process `local_rank` when each engine spans `tensor_parallel_size`."""
    return list(range(local_rank * tensor_parallel_size, (local_rank + 1) * tensor_parallel_size))


def check_devices(launch: Launch, tensor_parallel_size: int, visible: int) -> None:
    """Refuse a launch whose processes on one node need more devices than the node shows."""
    need = launch.local_world * tensor_parallel_size
    if visible and need > visible:
        raise HarnessError(
            f"{launch.local_world} processes per node x {tensor_parallel_size} device(s) per engine need {need} "
            f"devices, but this node shows {visible}: launch {max(1, visible // tensor_parallel_size)} processes "
            "per node (e.g. torchrun --nproc-per-node), or lower --tensor-parallel-size"
        )


def visible_gpus() -> int:
    """The CUDA devices this process sees, counted without initialising CUDA where torch allows it (a CUDA
    context would fix the device list before CUDA_VISIBLE_DEVICES is narrowed for an in-process vLLM engine)."""
    import torch

    count_nvml = getattr(torch.cuda, "_device_count_nvml", None)
    count = count_nvml() if count_nvml is not None else -1
    if count < 0:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return min(count, len(listed)) if listed else count


def engine_placement(
    launch: Launch, tensor_parallel_size: int, backend: str, device: str | None, visible: int, env: Mapping[str, str]
) -> tuple[str | None, dict[str, str]]:
    """Where this process's engine goes: (hf device or None for the default, environment variables to set).

    vLLM picks its devices from CUDA_VISIBLE_DEVICES, so that is narrowed to this process's devices before the
    engine starts; hf gets `cuda:<first device>`. Nothing changes without visible GPUs, for a single process, or
    when --device was given."""
    if not launch.launched or device is not None or not visible:
        return device, {}
    if visible == tensor_parallel_size:  # the launcher gave each process its own GPUs (srun --gpus-per-task)
        return (None if backend == "vllm" else "cuda:0"), {}
    check_devices(launch, tensor_parallel_size, visible)
    mine = local_devices(launch.local_rank, tensor_parallel_size)
    if backend == "vllm":
        listed = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        names = listed if listed else [str(i) for i in range(visible)]
        return device, {"CUDA_VISIBLE_DEVICES": ",".join(names[i] for i in mine)}
    return f"cuda:{mine[0]}", {}


def pin_engine(launch: Launch, tensor_parallel_size: int, backend: str, device: str | None) -> str | None:
    """Apply `engine_placement` to this process (before any engine starts); returns the hf device."""
    if not launch.launched or device is not None:
        return device
    device, env = engine_placement(launch, tensor_parallel_size, backend, device, visible_gpus(), os.environ)
    os.environ.update(env)
    return device


def colocated_engine_args(process_group_world: int, tensor_parallel_size: int) -> dict[str, object]:
    """What a vLLM engine inside a launched training run asks for (TRL's colocate mode): with more than one
    process in the group, vLLM's `external_launcher` executor, which runs the engine in this process on the
    process's own device (LOCAL_RANK) within the launcher's process group, instead of every process's engine on
    device 0. One engine per rank: tensor parallelism there would need every rank of a group to sample the same
    prompts, which the training loop does not arrange, so it is refused."""
    if process_group_world <= 1:
        return {}
    if tensor_parallel_size > 1:
        raise HarnessError(
            f"--tensor-parallel-size {tensor_parallel_size} inside a launched training run of {process_group_world} "
            "processes: vLLM's engine runs one per rank there (each on its rank's GPU); use --tensor-parallel-size 1"
        )
    return {"distributed_executor_backend": "external_launcher"}
