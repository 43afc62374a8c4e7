"""Prompt rendering shared by every back-end, so hf and vllm see exactly the same token ids."""

from __future__ import annotations


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
        return tokenizer(prompt, add_special_tokens=True)["input_ids"]
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]
