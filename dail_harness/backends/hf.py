"""The `hf` back-end: batched transformers `generate` with the model's chat template.

Sampling runs as a logits processor that applies the presence penalty, temperature and top-p and adds
keyed Gumbel noise (see `dail_harness.sampling`), with greedy selection on top: each sample is then a
function of (seed, problem, sample index) alone. On CUDA, decode uses a static KV cache with a compiled
forward (CUDA graphs), since eager decode is launch-bound; batch size and prompt width are padded to
fixed buckets there so the compiled graph is reused. The CPU path is plain eager generate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from dail_harness import registry
from dail_harness.backends.base import Completion, GenerationRequest, SamplingBackend
from dail_harness.models.loading import default_device, eos_token_ids, load_causal_lm, load_tokenizer, resolve_model
from dail_harness.sampling import SamplingParams, apply_presence_penalty, keyed_uniform, sample_key, warp_logits

PROMPT_BUCKET = 128  # static-cache prompt widths are rounded up to this (fewer recompiles)


class KeyedSamplingProcessor:
    """transformers logits processor: penalties, warping and keyed Gumbel noise (argmax = a sample)."""

    def __init__(self, keys: torch.Tensor, prompt_width: int, params: SamplingParams):
        self.keys, self.prompt_width, self.params = keys, prompt_width, params
        self.logprobs: list[torch.Tensor] = []
        """With params.logprobs: per step, each row's raw log-probability of the token generate picks (the argmax
        of what this returns)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = self._choose(input_ids, scores)
        if self.params.logprobs:
            token = chosen.argmax(-1, keepdim=True)
            self.logprobs.append(torch.log_softmax(scores.float(), -1).gather(1, token).squeeze(1))
        return chosen

    def _choose(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        p = self.params
        generated = input_ids[:, self.prompt_width :]
        scores = apply_presence_penalty(scores.float(), generated, p.presence_penalty)
        if p.temperature == 0:
            return scores
        pos = torch.full((scores.shape[0],), generated.shape[1], device=scores.device)
        u = keyed_uniform(self.keys.to(scores.device), pos, scores.shape[-1])
        return warp_logits(scores, p.temperature, p.top_p, p.top_k) - torch.log(-torch.log(u))


@registry.register("backends", "hf", aliases=("transformers",))
class HFBackend(SamplingBackend):
    """transformers generate: batched, chat template, keyed sampling; static cache + graphs on GPU."""

    name = "hf"

    def __init__(
        self,
        model: str | tuple[Any, Any],
        *,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        static_cache: bool | None = None,
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        chat_template_kwargs: dict | None = None,
    ):
        self.model_name = model if isinstance(model, str) else type(model).__name__
        self.device = device or default_device()
        if isinstance(model, str):
            path = resolve_model(model)
            self.tokenizer = load_tokenizer(path)
            self.model = load_causal_lm(path, device=self.device, dtype=dtype)
        else:  # an already-loaded (model, tokenizer) pair: benchmarks, notebooks
            self.model, self.tokenizer = model
            self.tokenizer.padding_side = "left"
        from dail_harness.models.attention import use_folded_gqa

        use_folded_gqa(self.model)  # left-padded batches decode with a mask: fold GQA instead of copying KV
        on_gpu = self.device.startswith("cuda")
        self.batch_size = batch_size or (32 if on_gpu else 8)
        self.static_cache = on_gpu if static_cache is None else static_cache
        self.use_chat_template = use_chat_template and self.tokenizer.chat_template is not None
        self.system_prompt = system_prompt
        self.chat_template_kwargs = chat_template_kwargs or {}
        self.eos_ids = eos_token_ids(self.tokenizer, self.model.generation_config)
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", None) or 32768)

    @classmethod
    def for_policy(cls, model, tokenizer, cfg, every_rank: bool = True) -> HFBackend:
        """Sample from the model being trained, in memory (its adapter on), with keyed randomness (nothing to
        coordinate between processes, whichever of them build one)."""
        device = str(next(model.parameters()).device)
        return cls(
            (model, tokenizer),
            device=device,
            chat_template_kwargs={"enable_thinking": cfg.thinking},
            batch_size=cfg.sample_batch_size,
        )

    def _generation_config(self, params: SamplingParams):
        from transformers import GenerationConfig

        # Built from scratch: a model's own defaults (e.g. repetition_penalty 1.05) are not applied,
        # so hf and vllm see exactly the settings in SamplingParams.
        cfg = GenerationConfig(
            max_new_tokens=params.max_tokens,
            do_sample=False,
            eos_token_id=self.eos_ids + sorted(set(params.stop_token_ids) - set(self.eos_ids)),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if self.static_cache:
            cfg.cache_implementation = "static"
        if params.stop:
            cfg.stop_strings = list(params.stop)
        return cfg

    def generate(self, requests: list[GenerationRequest], params: SamplingParams) -> Iterator[list[Completion]]:
        prompts = {r.request_id: self.render(r) for r in requests}
        rows = [(r.request_id, i) for r in requests for i in r.sample_indices]
        rows.sort(key=lambda row: -len(prompts[row[0]]))  # similar lengths together: less padding
        cfg = self._generation_config(params)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            yield self._generate_batch(chunk, prompts, params, cfg)

    def _generate_batch(self, chunk, prompts, params, cfg) -> list[Completion]:
        ids = [prompts[rid] for rid, _ in chunk]
        keys = [sample_key(params.seed, rid, i) for rid, i in chunk]
        generated, logprobs = self._decode(ids, keys, params, cfg)
        return [
            self._finish(rid, i, len(prompts[rid]), toks, params, lps)
            for (rid, i), toks, lps in zip(chunk, generated, logprobs or [None] * len(chunk))
        ]

    def decode_ids(self, ids: list[list[int]], keys: list[int], params: SamplingParams, cfg=None) -> list[list[int]]:
        """Generate for a batch of prompt ids (one key per row); returns the new token ids per row."""
        return self._decode(ids, keys, params, cfg)[0]

    @torch.inference_mode()
    def _decode(self, ids: list[list[int]], keys: list[int], params: SamplingParams, cfg=None):
        """The new token ids per row, and with params.logprobs their raw log-probabilities (else None)."""
        from transformers import LogitsProcessorList

        cfg = cfg or self._generation_config(params)
        width = max(len(x) for x in ids)
        real = len(ids)
        if self.static_cache:  # fixed shapes so the compiled decode graph is reused across batches
            width = math.ceil(width / PROMPT_BUCKET) * PROMPT_BUCKET
            pad_rows = max(0, self.batch_size - real)
            ids, keys = ids + [ids[0]] * pad_rows, keys + [keys[0]] * pad_rows
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        processor = KeyedSamplingProcessor(torch.tensor(keys, dtype=torch.int64), width, params)
        kwargs = {"tokenizer": self.tokenizer} if params.stop else {}
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=cfg,
            logits_processor=LogitsProcessorList([processor]),
            synced_gpus=False,  # every process samples alone (an FSDP policy is whole while it samples)
            **kwargs,
        )
        logprobs = torch.stack(processor.logprobs, 1)[:real].tolist() if params.logprobs else None
        return out[:real, width:].tolist(), logprobs

    def _finish(
        self,
        request_id: str,
        sample_index: int,
        prompt_tokens: int,
        toks: list[int],
        params: SamplingParams,
        logprobs: list[float] | None = None,
    ) -> Completion:
        """Cut a generated row at its end (EOS or stop string) and decode it."""
        stops = set(self.eos_ids) | set(params.stop_token_ids)
        end_at = next((j for j, t in enumerate(toks) if t in stops), None)
        if end_at is not None:
            kept, reason = toks[: end_at + 1], "stop"
            # an end-of-sequence token is not text; a stop token (e.g. </think>) is kept as text
            body = kept[:-1] if toks[end_at] in self.eos_ids else kept
        else:
            kept, body, reason = toks, toks, "length"
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
            if end_at is None:  # generation halted after the stop string; the rest is padding
                while kept and kept[-1] == self.tokenizer.pad_token_id:
                    kept = kept[:-1]
        lps = None if logprobs is None else logprobs[: len(kept)]
        return Completion(request_id, sample_index, text, len(kept), prompt_tokens, reason, list(kept), lps)

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
