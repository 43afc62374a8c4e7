"""Prompt rendering shared by every back-end and by training, so hf, vllm and the training contexts see
exactly the same token ids.

Text that comes from data (a problem, a solution, a system prompt, a response) is tokenized as text: a
control token's spelling inside it (`<|im_end|>` in a problem, say) stays characters and never ends a turn.
Text without such spellings, which is nearly all of it, is tokenized as one string, exactly as
`apply_chat_template(tokenize=True)` (vLLM's and lm-eval's path) would.
"""

from __future__ import annotations


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
