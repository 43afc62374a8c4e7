"""tiny-random builds offline, deterministically, with a ChatML template and thinking tokens."""

import hashlib

from dail_harness.models import tiny_random


def test_build_is_deterministic(tmp_path, monkeypatch):
    digests = []
    for name in ("a", "b"):
        monkeypatch.setenv("DAIL_HARNESS_CACHE", str(tmp_path / name))
        path = tiny_random.ensure_tiny_random()
        assert path == tmp_path / name / "models" / f"tiny-random-{tiny_random.VERSION}"
        digests.append(
            {
                f: hashlib.sha256((path / f).read_bytes()).hexdigest()
                for f in ("tokenizer.json", "model.safetensors", "config.json")
            }
        )
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert digests[0] == digests[1]


def test_tokenizer_and_chat_template():
    from transformers import AutoConfig, AutoTokenizer

    path = tiny_random.ensure_tiny_random()
    tok = AutoTokenizer.from_pretrained(path)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 1+1?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
    thinking = tok.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    for t in ("<think>", "</think>", "<|im_end|>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
    assert tok.decode(tok("x = \\boxed{204}", add_special_tokens=False)["input_ids"]) == "x = \\boxed{204}"
    assert AutoConfig.from_pretrained(path).model_type == "qwen2"


def test_cpu_dtype_follows_native_bf16():
    from dail_harness.models import cpu

    intel = "processor : 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    amd = "processor : 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    assert cpu.bf16_flag_in(intel) == "amx_bf16" and cpu.bf16_flag_in(amd) is None
    assert cpu.bf16_flag_in("flags : avx512_bf16\n") == "avx512_bf16" and cpu.bf16_flag_in("") is None
    dtype, why = cpu.cpu_dtype()
    assert (dtype == "bfloat16") == (cpu.native_bf16_flag() is not None) and why
