"""`--backend auto`: the rule and its printed reason (no engine starts here)."""

import importlib.util
import json

import pytest

from dail_harness.backends.auto import VLLM_MIN_TOKENS, choose_backend


@pytest.fixture
def vllm_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))


def test_vllm_for_large_jobs_hf_for_small_ones(vllm_installed):
    assert choose_backend(VLLM_MIN_TOKENS, "tiny-random", [])[0] == "vllm"
    backend, reason = choose_backend(VLLM_MIN_TOKENS - 1, "tiny-random", [])
    assert backend == "hf" and f"{VLLM_MIN_TOKENS - 1:,} tokens" in reason


def test_hf_when_vllm_cannot_serve_the_job(vllm_installed, tmp_path):
    assert choose_backend(10**9, "tiny-random", ["--device"]) == ("hf", "--device is an hf setting")
    assert choose_backend(10**9, "tiny-random", [], "the policy is a LoRA on lm_head") == (
        "hf",
        "the policy is a LoRA on lm_head",
    )
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    from dail_harness.models.loading import resolve_model

    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": resolve_model("tiny-random")}))
    backend, reason = choose_backend(10**9, str(adapter), [])
    assert backend == "hf" and "LoRA adapter" in reason


def test_hf_without_vllm(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert choose_backend(10**9, "tiny-random", []) == ("hf", "vLLM is not installed")


def test_generate_prints_the_choice_and_a_resume_keeps_the_runs_backend(tmp_path, cli, vllm_installed):
    data = tmp_path / "e.jsonl"
    data.write_text(json.dumps({"problem_id": "a", "problem": "What is 1+1?", "solution": "2"}) + "\n")
    args = ["generate", "--data", data, "--model", "tiny-random", "--tau", "0", "--max-tokens", "4", "--n", "2"]
    args += ["--select", "all", "--no-progress", "--out", tmp_path / "d.jsonl"]
    code, _, err = cli(*args)
    assert code == 0, err
    assert "--backend auto chose hf (at most 8 tokens to sample" in err
    settings = json.loads((tmp_path / "d.jsonl.settings.json").read_text())
    assert settings["backend"] == "hf"
    settings["backend"] = "vllm"  # as if the run had started on a larger job: a rerun keeps the recorded back-end
    (tmp_path / "d.jsonl.settings.json").write_text(json.dumps(settings))
    from dail_harness.dsyn.generate import GenerateConfig, auto_backend
    from dail_harness.worklog import SettingsRecord

    cfg = GenerateConfig(data=str(data), model="tiny-random", out=str(tmp_path / "d.jsonl"), max_tokens=4)
    record = SettingsRecord(tmp_path / "d.jsonl.settings.json", tmp_path / "d.jsonl", "D_syn file")
    assert auto_backend(cfg, 1, record) == ("vllm", "the back-end this run started with")
    assert auto_backend(cfg, 1, SettingsRecord(tmp_path / "new.json", tmp_path / "new", "D_syn file"))[0] == "hf"
    cfg.enforce_eager = True
    assert auto_backend(cfg, 1, SettingsRecord(tmp_path / "new.json", tmp_path / "new", "D_syn file"))[0] == "vllm"


def test_a_direct_generate_batch_size_keeps_auto_on_hf(tmp_path, vllm_installed):
    """vLLM takes direct requests in chunks of its own: with --batch-size, auto picks hf, which uses it."""
    from dail_harness.dsyn.generate import GenerateConfig, auto_backend
    from dail_harness.worklog import SettingsRecord

    new = SettingsRecord(tmp_path / "new.json", tmp_path / "new", "D_syn file")
    big = VLLM_MIN_TOKENS  # a job vLLM would take
    cfg = GenerateConfig(data="d", model="tiny-random", out="o", max_tokens=1, mode="direct")
    assert auto_backend(cfg, big, new)[0] == "vllm"
    cfg.batch_size = 8
    assert auto_backend(cfg, big, new)[0] == "hf"
    cfg.mode = "mixed"  # the mixed vLLM rollouts take --batch-size pairs per call
    assert auto_backend(cfg, big, new)[0] == "vllm"
