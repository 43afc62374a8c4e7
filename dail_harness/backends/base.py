"""The sampling back-end interface: requests in, completions out, in batches as they finish; and the prompt
rendering every back-end and training share, so hf, vllm and the training contexts see the same token ids."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dail_harness.sampling import SamplingParams


@dataclass
class GenerationRequest:
    """One prompt and the sample indices still to produce for it (all of them, or what a resume lacks)."""

    request_id: str
    """Stable id, `task/problem_id`; also keys the per-sample randomness."""
    prompt: str
    """The user-turn text; back-ends apply the model's chat template."""
    sample_indices: list[int] = field(default_factory=lambda: [0])
    prefix_ids: list[int] = field(default_factory=list)
    """Assistant tokens already generated (continue from here): budget forcing's answer phase."""


@dataclass
class Completion:
    request_id: str
    sample_index: int
    text: str
    num_tokens: int
    """Generated tokens, including a final end-of-sequence token."""
    prompt_tokens: int
    finish_reason: str
    """`stop` (end of sequence, a stop token or a stop string) or `length` (hit max tokens)."""
    token_ids: list[int] = field(default_factory=list)
    """The generated token ids (a stop token included), for exact continuation."""
    logprobs: list[float] | None = None
    """With `SamplingParams.logprobs`: each token id's log-probability under the model's raw distribution."""


def refuse_unused_engine_options(name: str, backend_cls: type, given: dict[str, Any]) -> None:
    """One error for an engine flag the user set that back-end `name` has no parameter for (e.g.
    `--tensor-parallel-size` with hf, `--batch-size` with vllm): a flag that is accepted is a flag that is used."""
    import inspect

    params = inspect.signature(backend_cls).parameters  # the constructor's, without self
    if any(v.kind == v.VAR_KEYWORD for v in params.values()):
        return  # a back-end that takes **options says it uses them
    named = {p for p, v in params.items() if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)}
    for key in given:
        if key not in named:
            from dail_harness.errors import HarnessError

            raise HarnessError(
                f"--{key.replace('_', '-')}: the '{name}' back-end does not use it (drop it, or pick "
                "the back-end it belongs to with --backend)"
            )


def open_backend(name: str, model: Any, seed: int | None = None, **options: Any) -> SamplingBackend:
    """Back-end `name` on `model` with `options` (a None value is unset and left out). An option the back-end has
    no parameter for is one error naming it: no back-end swallows an argument. `seed` goes to back-ends with an
    engine seed of their own (`engine_seed`); the others draw every sample from `SamplingParams.seed`."""
    from dail_harness import registry

    cls = registry.get("backends", name)
    given = {k: v for k, v in options.items() if v is not None}
    if cls.engine_seed and seed is not None:
        given["seed"] = seed
    refuse_unused_engine_options(name, cls, given)
    return cls(model, **given)


class SamplingBackend(ABC):
    """Base class; subclasses register with `@registry.register("backends", NAME)` and take their engine
    settings as named constructor parameters (built through `open_backend`)."""

    name = ""
    engine_seed = False
    """The engine has a seed of its own (vLLM's sampler, used where keyed draws do not apply)."""
    tokenizer: Any = None
    """The tokenizer prompts are rendered with (set by subclasses)."""
    system_prompt: str | None = None
    use_chat_template: bool = True
    chat_template_kwargs: dict | None = None
    eos_ids: list[int]
    """Every token id that ends a sequence (the tokenizer's EOS and the generation config's)."""
    context_length: int = 32768
    """The model's context length (prompt plus generated tokens)."""
    _rollout_engine: Any = None

    @classmethod
    def check_policy(cls, cfg) -> None:
        """Fail before training if this back-end cannot sample the model a run with settings `cfg` trains."""
        if cls.for_policy.__func__ is SamplingBackend.for_policy.__func__:  # type: ignore[attr-defined]
            from dail_harness.errors import HarnessError

            raise HarnessError(f"the '{cls.name}' back-end cannot sample from a model being trained; use --backend hf")

    @classmethod
    def for_policy(cls, model, tokenizer, cfg, every_rank: bool = True) -> SamplingBackend:
        """A back-end that samples from a model being trained (methods that sample during training).
        `every_rank`: every process of a launched run builds one (online methods), or the main process alone (its
        evaluations): an engine whose construction is collective must know."""
        from dail_harness.errors import HarnessError

        raise HarnessError(f"the '{cls.name}' back-end cannot sample from a model being trained; use --backend hf")

    def render(self, request: GenerationRequest) -> list[int]:
        """Token ids of the full prompt (chat template, generation prompt, continuation prefix): the same
        code for every back-end, so they all see exactly the same inputs."""
        return render_prompt_ids(
            self.tokenizer,
            request.prompt,
            system_prompt=self.system_prompt,
            use_chat_template=self.use_chat_template,
            chat_template_kwargs=self.chat_template_kwargs,
        ) + list(request.prefix_ids)

    @abstractmethod
    def generate(self, requests: list[GenerationRequest], params: SamplingParams) -> Iterator[list[Completion]]:
        """Yield completions in groups as they finish (the caller stores each group at once)."""

    def rollout(self, requests: list, cfg: Any) -> Iterator[list]:
        """Mixed-policy rollouts (`rollout.base.RolloutRequest`: a student and a privileged context per trace,
        with the `RolloutConfig`'s mixing rule) on this back-end's model: the sampling interface's paired form,
        run by the engine registered under "rollouts" by the back-end's name; results in groups as they finish."""
        from dail_harness import registry

        if self._rollout_engine is None:
            self._rollout_engine = registry.get("rollouts", self.name).from_backend(self)
        yield from self._rollout_engine.run(requests, cfg)

    def close(self) -> None:  # noqa: B027 (an optional hook: most back-ends hold nothing to release)
        """Release the model and any engine resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Prompt rendering. Text that comes from data (a problem, a solution, a system prompt, a response) is tokenized
# as text: a control token's spelling inside it (`<|im_end|>` in a problem, say) stays characters and never ends a turn.
# Text without such spellings, which is nearly all of it, is tokenized as one string, exactly as
# `apply_chat_template(tokenize=True)` (vLLM's and lm-eval's path) would.
def _has_control_spelling(tokenizer, texts: list[str]) -> bool:
    return any(tok in text for tok in tokenizer.all_special_tokens for text in texts)


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of data text, control-token spellings kept as characters."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def render_prompt_ids(
    tokenizer,
    prompt: str,
    *,
    system_prompt: str | None = None,
    use_chat_template: bool = True,
    chat_template_kwargs: dict | None = None,
) -> list[int]:
    """Token ids of a user-turn prompt: chat template applied, generation prompt added."""
    if not use_chat_template or tokenizer.chat_template is None:
        return tokenizer(prompt, add_special_tokens=True, split_special_tokens=True)["input_ids"]
    contents = ([system_prompt] if system_prompt else []) + [prompt]
    roles = (["system"] if system_prompt else []) + ["user"]
    kwargs = chat_template_kwargs or {}
    if not _has_control_spelling(tokenizer, contents):
        messages = [{"role": r, "content": c} for r, c in zip(roles, contents)]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    # render with placeholders, then tokenize the template's pieces as template and the contents as text
    marks = [f"\ue000{i}\ue001" for i in range(len(contents))]
    messages = [{"role": r, "content": m} for r, m in zip(roles, marks)]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    ids: list[int] = []
    for mark, content in zip(marks, contents):
        before, text = text.split(mark, 1)
        ids += tokenizer(before, add_special_tokens=False)["input_ids"] + text_ids(tokenizer, content)
    return ids + tokenizer(text, add_special_tokens=False)["input_ids"]
