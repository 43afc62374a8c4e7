"""Training: losses against float64 references, three aligned contexts, resume, end to end."""

import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dail_harness.eval.store import RunStore, sample_id
from dail_harness.training.examples import build_example, collate, flat_targets
from dail_harness.training.losses import chunked_sums, make_loss


def explicit_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """KL(p || q) at one position by an explicit sum over the vocabulary (float64)."""
    p = np.exp(p_logits - p_logits.max())
    p /= p.sum()
    q = np.exp(q_logits - q_logits.max())
    q /= q.sum()
    return float(sum(pi * (np.log(pi) - np.log(qi)) for pi, qi in zip(p, q)))


def setup_tensors(n=7, h=5, v=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(h, v, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(v, h, generator=g, dtype=torch.float64))
    hs = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    refs = {
        "privileged": torch.randn(n, h, generator=g, dtype=torch.float64),
        "negative": torch.randn(n, h, generator=g, dtype=torch.float64),
    }
    targets = torch.randint(0, v, (n,), generator=g)
    return head, hs, refs, targets


def loss_value(name, head, hs, refs, targets, chunk, **opts):
    loss = make_loss(name, opts)
    sums = chunked_sums(hs, {c: refs[c] for c in loss.contexts}, targets, head, loss.terms_fn, loss.terms, chunk)
    return loss.combine(sums, len(targets))


def reference_value(name, head, hs, refs, targets, gamma=0.1, direction="reverse", reference="privileged"):
    W = head.weight.detach().numpy()
    zs = hs.detach().numpy() @ W.T
    zp = refs["privileged"].numpy() @ W.T
    zn = refs["negative"].numpy() @ W.T
    n = len(targets)
    kl = (lambda a, b: explicit_kl(a, b)) if direction == "reverse" else (lambda a, b: explicit_kl(b, a))
    if name == "nll":
        return sum(-(zs[i, targets[i]] - np.log(np.exp(zs[i]).sum())) for i in range(n)) / n
    kl_ps = sum(kl(zs[i], zp[i]) for i in range(n)) / n
    if name == "kl":
        return kl_ps if reference == "privileged" else sum(kl(zs[i], zn[i]) for i in range(n)) / n
    return kl_ps - gamma * sum(kl(zs[i], zn[i]) for i in range(n)) / n


@pytest.mark.parametrize(
    "name,opts",
    [
        ("nll", {}),
        ("kl", {"kl_direction": "reverse"}),
        ("kl", {"kl_direction": "forward"}),
        ("kl", {"kl_reference": "negative"}),
        ("dail", {"gamma": 0.1}),
        ("dail", {"gamma": 0.7, "kl_direction": "forward"}),
    ],
)
def test_loss_matches_explicit_float64_and_chunking_is_exact(name, opts):
    head, hs, refs, targets = setup_tensors()
    ref = reference_value(
        name,
        head,
        hs,
        refs,
        targets,
        opts.get("gamma", 0.1),
        opts.get("kl_direction", "reverse"),
        opts.get("kl_reference", "privileged"),
    )
    values, grads = [], []
    for chunk in (1, 3, 7, 100):
        hs.grad = None
        out = loss_value(name, head, hs, refs, targets, chunk, **opts)
        out.loss.backward()
        values.append(out.loss.item())
        grads.append(hs.grad.clone())
    assert values[0] == pytest.approx(ref, rel=1e-10, abs=1e-12)
    for v, g in zip(values[1:], grads[1:]):
        assert v == pytest.approx(values[0], rel=1e-12, abs=1e-13)
        assert torch.allclose(g, grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,opts", [("nll", {}), ("kl", {}), ("dail", {"gamma": 0.1})])
def test_gradient_matches_finite_differences(name, opts):
    head, hs, refs, targets = setup_tensors(n=4, h=3, v=6, seed=1)
    out = loss_value(name, head, hs, refs, targets, 2, **opts)
    out.loss.backward()
    eps = 1e-6
    for i, j in [(0, 0), (1, 2), (3, 1)]:
        plus, minus = hs.detach().clone(), hs.detach().clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        fd = (
            reference_value(name, head, plus, refs, targets, **({"gamma": opts["gamma"]} if "gamma" in opts else {}))
            - reference_value(name, head, minus, refs, targets, **({"gamma": opts["gamma"]} if "gamma" in opts else {}))
        ) / (2 * eps)
        assert hs.grad[i, j].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_gamma_zero_reduces_dail_to_kl_and_terms_are_reported():
    head, hs, refs, targets = setup_tensors()
    d = loss_value("dail", head, hs, refs, targets, 4, gamma=0.0)
    k = loss_value("kl", head, hs, refs, targets, 4)
    assert d.loss.item() == pytest.approx(k.loss.item(), rel=1e-14)
    assert set(d.stats) >= {"kl_ps", "kl_nr"} and d.stats["kl_ps"] == pytest.approx(k.stats["kl_ps"])
    assert d.stats["kl_nr"] > 0


@pytest.fixture(scope="module")
def tiny():
    from dail_harness.models.loading import load_tokenizer, resolve_model

    return resolve_model("tiny-random"), load_tokenizer(resolve_model("tiny-random"))


def test_contexts_splice_one_response_and_masks_select_its_predictions(tiny):
    _, tok = tiny
    prompts = {
        "student": "Solve x.",
        "privileged": "A much longer privileged prompt with a solution: x = 2.",
        "negative": "Hint: 2.",
    }
    ex = build_example("e", prompts, " We get x = 2.", tok, max_length=512)
    ex2 = build_example("f", prompts, " Longer trace here, so rows differ in length.", tok, max_length=512)
    assert ex.targets[-1] == tok.eos_token_id
    for ctx in prompts:
        ids, mask, index = collate([ex, ex2], ctx, tok.pad_token_id, "cpu")
        assert int(mask.sum()) == len(ex.inputs[ctx]) + len(ex2.inputs[ctx])
        # the token after each selected position is exactly the response token it predicts
        nxt = ids[index[0], index[1] + 1]
        assert torch.equal(nxt, flat_targets([ex, ex2], "cpu"))
        assert int(index[1][0]) == ex.prompt_lengths[ctx] - 1  # the first response token is included
        assert all(mask[index[0], index[1]] == 1) and all(mask[index[0], index[1] + 1] == 1)  # no padding
    short = build_example("g", prompts, "x " * 400, tok, max_length=40)
    assert len(short.inputs["student"]) == 40


def test_reference_passes_are_the_base_model_without_gradient(tiny):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dail_harness.training.engine import StudentHidden, compute_loss
    from dail_harness.training.policy import Policy

    path, tok = tiny
    base = AutoModelForCausalLM.from_pretrained(path)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path),
        LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # the adapter now changes the outputs
    ex = build_example(
        "e", {"student": "S", "privileged": "P with solution", "negative": "N"}, " r t", tok, max_length=128
    )
    captured = {}
    decoder = model.get_decoder()
    orig = decoder.forward

    def spy(*a, **kw):
        out = orig(*a, **kw)
        captured.setdefault("calls", []).append((torch.is_grad_enabled(), out.last_hidden_state))
        return out

    decoder.forward = spy
    loss = make_loss("dail", {"gamma": 0.1})
    result, _ = compute_loss(StudentHidden(model), Policy.wrap(model), [ex], loss, tok.pad_token_id, "cpu", 8)
    decoder.forward = orig
    (grad_s, h_s), (grad_p, h_p), (grad_n, h_n) = captured["calls"]
    assert grad_s and not grad_p and not grad_n
    assert h_s.requires_grad and not h_p.requires_grad and not h_n.requires_grad
    for ctx, h in (("privileged", h_p), ("negative", h_n)):
        ids, mask, _ = collate([ex], ctx, tok.pad_token_id, "cpu")
        with torch.no_grad():
            expected = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(h, expected, atol=1e-5)  # adapter off == base model
    ids, mask, _ = collate([ex], "student", tok.pad_token_id, "cpu")
    with torch.no_grad():
        assert not torch.allclose(h_s, base.model(input_ids=ids, attention_mask=mask).last_hidden_state, atol=1e-3)
    result.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n and p.requires_grad)


def write_dsyn(path, n=6):
    rows = []
    for i in range(n):
        rows.append(
            {
                "problem_id": f"p{i}",
                "sample_index": 0,
                "problem": f"What is {i} + {i}?",
                "solution": f"Add: {i} + {i} = {2 * i}. \\boxed{{{2 * i}}}",
                "answer": str(2 * i),
                "waypoints": [str(i)],
                "trace": f" We add {i} and {i} to get {2 * i}. The answer is \\boxed{{{2 * i}}}.",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TRAIN = [
    "--model",
    "tiny-random",
    "--batch-size",
    "1",
    "--grad-accum",
    "2",
    "--lr",
    "5e-3",
    "--max-length",
    "1024",
    "--lora-r",
    "8",
    "--lora-alpha",
    "16",
    "--no-progress",
    "--device",
    "cpu",
    "--warmup-steps",
    "1",
]


@pytest.mark.parametrize("method", ["dail", "nll", "sft"])
def test_short_training_lowers_loss_and_adapter_evaluates(method, tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl")
    loss = ["--loss", "nll"] if method == "dail" else []  # nll's decrease is the clearest signal
    code, out, err = cli(
        "train", "--method", method, "--data", data, "--out", tmp_path / "run", "--epochs", "6", *TRAIN, *loss
    )
    assert code == 0, err
    log = [json.loads(l) for l in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 18
    assert np.mean([r["loss"] for r in log[-3:]]) < 0.8 * np.mean([r["loss"] for r in log[:3]])
    assert (tmp_path / "run" / "adapter_config.json").exists()
    assert (
        json.loads((tmp_path / "run" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-random"
    )
    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        tmp_path / "run",
        "--limit",
        "1",
        "--n",
        "1",
        "--max-tokens",
        "4",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "ev",
    )
    assert code == 0, err


def test_dail_loss_logs_both_kl_terms_and_merge(tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    code, _, err = cli(
        "train", "--method", "dail", "--data", data, "--out", tmp_path / "run", "--max-steps", "1", "--merge", *TRAIN
    )
    assert code == 0, err
    row = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[0])
    assert row["kl_ps"] >= 0 and row["kl_nr"] >= 0
    assert row["loss"] == pytest.approx(row["kl_ps"] - 0.1 * row["kl_nr"], rel=1e-5, abs=1e-7)
    assert (tmp_path / "run" / "merged" / "config.json").exists()
    provenance = json.loads((tmp_path / "run" / "train_config.json").read_text())["provenance"]
    assert provenance["versions"]["torch"] == torch.__version__ and provenance["device"]
    assert provenance["started_at"] <= provenance["finished_at"] and provenance["wall_seconds"] > 0


def test_bad_rows_and_settings_are_clear_errors(tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem_id": "a", "problem": "x", "trace": "t", "solution": "s"}) + "\n")
    code, _, err = cli("train", "--method", "dail", "--data", bad, "--out", tmp_path / "r", *TRAIN)
    assert code == 2 and "bad.jsonl:1, field 'waypoints': missing field" in err
    bad.write_text(json.dumps({"problem_id": "a", "problem": "x"}) + "\n")
    code, _, err = cli("train", "--method", "nll", "--data", bad, "--out", tmp_path / "r", *TRAIN)
    assert code == 2 and "field 'trace'" in err
    code, _, err = cli("train", "--method", "dial", "--data", bad, "--out", tmp_path / "r", *TRAIN)
    assert code == 2 and "did you mean 'dail'" in err
    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    assert cli("train", "--method", "dail", "--data", data, "--out", tmp_path / "s", "--max-steps", "1", *TRAIN)[0] == 0
    code, _, err = cli(
        "train",
        "--method",
        "dail",
        "--data",
        data,
        "--out",
        tmp_path / "s",
        "--max-steps",
        "1",
        "--gamma",
        "0.5",
        *TRAIN,
    )
    assert code == 2 and "loss_options.gamma: 0.1 -> 0.5" in err
    # an option the method and its loss do not have is refused, naming the valid ones
    code, _, err = cli("train", "--method", "nll", "--data", data, "--out", tmp_path / "t", "--gamma", "0.5", *TRAIN)
    assert code == 2 and "--gamma is not an option of method 'nll' or of its loss 'nll'" in err
    code, _, err = cli(
        "train", "--method", "dail", "--data", data, "--out", tmp_path / "t", "--loss-opt", "gama=0.5", *TRAIN
    )
    assert code == 2 and "did you mean 'gamma'" in err and "its options: gamma, kl_direction" in err
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_two_process_ddp_reproduces_the_single_process_loss_curve(tmp_path, cli):
    """torchrun with 2 CPU processes (gloo): each step shards its micro-batches across processes."""
    data = write_dsyn(tmp_path / "d.jsonl", n=8)
    common = [
        "train",
        "--method",
        "dail",
        "--data",
        str(data),
        "--epochs",
        "1",
        *TRAIN[:2],
        "--batch-size",
        "1",
        "--lr",
        "5e-3",
        "--max-length",
        "1024",
        "--lora-r",
        "8",
        "--lora-alpha",
        "16",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert cli(*common, "--grad-accum", "4", "--out", tmp_path / "one")[0] == 0
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    subprocess.run(
        [
            torchrun,
            "--standalone",  # a free port (the suite runs two tests at a time)
            "--nproc_per_node",
            "2",
            "-m",
            "dail_harness",
            *common,
            "--grad-accum",
            "2",
            "--out",
            str(tmp_path / "two"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    one = [json.loads(l) for l in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    two = [json.loads(l) for l in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert (a["tokens"], a["lr"]) == (b["tokens"], b["lr"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-8)


def test_evaluation_during_training_and_the_training_report(tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl", n=4)
    code, out, err = cli(
        "train",
        "--method",
        "dail",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "2",
        "--eval-task",
        "aime24",
        "--eval-every",
        "1",
        "--eval-n",
        "2",
        "--eval-limit",
        "2",
        "--eval-max-tokens",
        "4",
        "--eval-temperature",
        "1.3",
        "--eval-top-p",
        "0.9",
        "--eval-presence-penalty",
        "0",
        "--eval-seed",
        "7",
        "--grade-workers",
        "0",
        *TRAIN,
    )
    assert code == 0, err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all({"eval/aime24/pass@1", "eval/aime24/pass@2"} <= set(r) for r in log)
    summary = json.loads((tmp_path / "run" / "evals" / "step-2" / "summary.json").read_text())
    assert summary["n"] == 2 and summary["num_problems"] == 2
    assert log[1]["eval/aime24/pass@2"] == summary["pass_at_k"]["2"]
    # the evaluation used the run's back-end and the --eval-* settings, not eval's defaults (0.6, 0.95, 1.5, 0):
    # the live policy's samples at the last step equal a standalone `eval` of the saved adapter with them
    run = json.loads((tmp_path / "run" / "evals" / "step-2" / "run.json").read_text())
    sampling = run["sampling"]
    assert run["backend"] == "hf"
    chosen = (sampling["temperature"], sampling["top_p"], sampling["presence_penalty"], sampling["seed"])
    assert chosen == (1.3, 0.9, 0, 7)
    code, _, err = cli(
        "eval", "--model", tmp_path / "run", "--task", "aime24", "--limit", "2", "--n", "2", "--max-tokens", "4",
        "--temperature", "1.3", "--top-p", "0.9", "--presence-penalty", "0", "--seed", "7",
        "--dtype", "float32", "--out", tmp_path / "alone", "--grade-workers", "0", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    live = {sample_id(r): r["completion"] for r in RunStore(tmp_path / "run" / "evals" / "step-2").load_samples()}
    alone = {sample_id(r): r["completion"] for r in RunStore(tmp_path / "alone").load_samples()}
    assert live == alone and len(live) == 4
    code, out, err = cli("report", tmp_path / "run", "--plot", tmp_path / "p.png")
    assert code == 0, err
    assert "dail" in out and "eval/aime24/pass@1" in out
    assert (tmp_path / "p_training.png").read_bytes()[:4] == b"\x89PNG"
    # extending the run with another protocol would put two protocols in one curve
    argv = ["train", "--method", "dail", "--data", data, "--out", tmp_path / "run", "--epochs", "3"]
    argv += ["--eval-task", "aime24", "--eval-n", "4", "--grade-workers", "0", *TRAIN]
    code, _, err = cli(*argv)
    assert code == 2 and "evaluation.n: 2 -> 4" in err and "evaluation.temperature: 1.3 -> 0.6" in err, err


def test_a_resume_may_start_or_stop_evaluations_but_not_change_them():
    from dail_harness.training.config import TrainConfig, keep_evaluation, resume_may_change
    from dail_harness.training.recipes import make_method
    from dail_harness.worklog import settings_changes

    def config(**evaluation):
        return TrainConfig(method="dail", model="m", data="d", out="o", **evaluation)

    def changes(old: dict, cfg: TrainConfig) -> tuple[str | None, dict]:
        """What a resume with `cfg` over the record `old` changes, and the settings it would record."""
        new = keep_evaluation(old, cfg.settings())
        return settings_changes(old, new, resume_may_change(cfg, make_method("dail"), old)), new

    none, some, other = config(), config(eval_task=["aime24"], eval_n=2), config(eval_task=["aime24"], eval_n=4)
    old_record = {k: v for k, v in none.settings().items() if k != "evaluation"}  # written before the key
    for old, cfg in ((none.settings(), some), (some.settings(), none), (old_record, some), (some.settings(), some)):
        assert changes(old, cfg)[0] is None
    assert changes(some.settings(), other)[0] == "evaluation.n: 2 -> 4"
    # a resume without evaluations keeps the recorded protocol, so a later one with another is still refused
    paused = changes(some.settings(), none)[1]
    assert paused["evaluation"] == some.settings()["evaluation"]
    assert changes(paused, other)[0] == "evaluation.n: 2 -> 4"


def test_full_fine_tuning_uses_a_frozen_reference_and_saves_the_model(tmp_path, cli):
    """--lora-r 0: every weight trains, a frozen copy serves the reference contexts. Before the first update
    the student is the base model either way, so the first step's loss equals the LoRA run's."""
    data = write_dsyn(tmp_path / "d.jsonl", n=4)
    common = [
        "train",
        "--method",
        "dail",
        "--data",
        data,
        "--max-steps",
        "2",
        "--grad-accum",
        "2",
        "--warmup-ratio",
        "0",
        *TRAIN,
    ]
    assert cli(*common, "--out", tmp_path / "lora")[0] == 0
    full_args = [a for i, a in enumerate(common) if "--lora-alpha" not in common[max(i - 1, 0) : i + 1]]
    code, _, err = cli(*full_args, "--lora-r", "0", "--out", tmp_path / "full")
    assert code == 0, err
    lora = [json.loads(line) for line in (tmp_path / "lora" / "train_log.jsonl").read_text().splitlines()]
    full = [json.loads(line) for line in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    for key in ("loss", "kl_ps", "kl_nr"):
        assert full[0][key] == pytest.approx(lora[0][key], rel=1e-5, abs=1e-7)
    assert full[1]["loss"] != pytest.approx(lora[1]["loss"], rel=1e-3)  # different parameters move
    assert (tmp_path / "full" / "config.json").exists() and not (tmp_path / "full" / "adapter_config.json").exists()
    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        tmp_path / "full",
        "--limit",
        "1",
        "--n",
        "1",
        "--max-tokens",
        "4",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "ev",
    )
    assert code == 0, err


def test_the_authors_training_settings_are_the_defaults(tmp_path, cli):
    """Weight decay 0.01, 5 warm-up steps, examples reaching --max-length dropped and counted."""
    data = write_dsyn(tmp_path / "d.jsonl", n=6)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["trace"] = "long " * 2000  # reaches --max-length: dropped (the authors' rule)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["train", "--method", "nll", "--data", data, "--epochs", "1", *TRAIN[:-2], "--grad-accum", "1"]
    code, out, err = cli(*args, "--out", tmp_path / "run")
    assert code == 0, err
    assert "dropped 1 examples whose student or privileged sequence reaches --max-length 1024" in out
    assert "trained 5 steps on 5 examples" in out  # 5 left, one per step
    settings = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert settings["weight_decay"] == 0.01 and settings["warmup_steps"] == 5 and settings["overlong"] == "drop"
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([5e-3 * k / 5 for k in range(5)])  # the rate each update used: warm-up from 0
    code, out, err = cli(*args, "--overlong", "truncate", "--out", tmp_path / "cut")
    assert code == 0 and "trained 6 steps on 6 examples" in out, err
    code, _, err = cli(*args, "--optimizer", "paged_adamw_8bit", "--out", tmp_path / "bnb")
    assert code == 2 and "needs bitsandbytes" in err


def test_the_authors_loss_mask_is_available_for_kl_losses(tiny, tmp_path, cli):
    from dail_harness.training.examples import flat_targets, positions

    _, tok = tiny
    ex = build_example("e", {"student": "S", "privileged": "P"}, " a b c", tok, max_length=None)
    ours, theirs = list(positions(ex, "student")), list(positions(ex, "student", "authors"))
    assert theirs == ours[2:] + [ours[-1] + 1]  # skips two predictions, adds the one after the last token
    ids, _, index = collate([ex], "student", tok.pad_token_id, "cpu", "authors")
    assert index[1].tolist() == theirs and int(index[1][-1]) == ids.shape[1] - 1
    assert flat_targets([ex], "cpu", "authors", tok.pad_token_id).tolist() == [*ex.targets[2:], tok.pad_token_id]
    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    code, _, err = cli(
        "train",
        "--method",
        "dail",
        "--data",
        data,
        "--out",
        tmp_path / "a",
        "--max-steps",
        "1",
        "--loss-mask",
        "authors",
        *TRAIN,
    )
    assert code == 0, err
    code, _, err = cli(
        "train", "--method", "nll", "--data", data, "--out", tmp_path / "b", "--loss-mask", "authors", *TRAIN
    )
    assert code == 2 and "works with the KL losses" in err


@pytest.mark.parametrize("context", ["student", "privileged", "both"])
def test_sft_context_puts_the_solution_under_the_chosen_prompt(context, tmp_path):
    from dail_harness.dsyn.prompts import Templates, privileged_prompt, student_prompt
    from dail_harness.training.recipes import make_method

    rows = [{"problem_id": f"p{i}", "problem": f"What is {i} + 1?", "solution": f"It is {i + 1}."} for i in range(3)]
    data = tmp_path / "e.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    method = make_method("sft", {"context": context})
    loaded = method.load_rows(data)
    templates = Templates()
    got = [(method.response(r), method.prompts(r, ("student",), templates)["student"]) for r in loaded]
    plain = [(r["solution"], student_prompt(r["problem"], templates)) for r in rows]
    hinted = [(r["solution"], privileged_prompt(r["problem"], r["solution"], templates)) for r in rows]
    expected = {"student": plain, "privileged": hinted, "both": plain + hinted}[context]
    assert got == expected
    # the engine names each example problem_id#sample_index: the two copies of a row must not collide
    assert len({f"{r['problem_id']}#{r.get('sample_index', 0)}" for r in loaded}) == len(expected)


def test_rerunning_a_finished_run_trains_nothing_and_reports_its_final_loss(tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    args = ("train", "--method", "nll", "--data", data, "--out", tmp_path / "run", "--max-steps", "2", *TRAIN)
    code, first, err = cli(*args)
    assert code == 0, err
    log = (tmp_path / "run" / "train_log.jsonl").read_text()
    code, again, err = cli(*args)
    assert code == 0, err
    final = f"final loss {json.loads(log.splitlines()[-1])['loss']:.4f}"
    assert final in first and final in again and "nan" not in again
    assert (tmp_path / "run" / "train_log.jsonl").read_text() == log


def test_tensorboard_tracker_writes_the_logged_scalars(tmp_path, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    run = tmp_path / "run"
    args = ("--method", "dail", "--data", data, "--out", run, "--max-steps", "3", "--report-to", "tensorboard")
    code, _, err = cli("train", *args, *TRAIN)
    assert code == 0, err
    log = [json.loads(l) for l in (run / "train_log.jsonl").read_text().splitlines()]
    runs = []
    for folder in sorted({p.parent for p in run.rglob("events.out.tfevents.*")}):
        runs.append(EventAccumulator(str(folder)))
        runs[-1].Reload()
    with_scalars = [a for a in runs if a.Tags()["scalars"]]
    assert len(with_scalars) == 1, "one TensorBoard run with the scalars (`tensorboard --logdir OUT`)"
    acc = with_scalars[0]
    for key in ("loss", "kl_ps", "kl_nr", "lr"):
        scalars = acc.Scalars(key)
        assert [s.step for s in scalars] == [r["step"] for r in log]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in log], rel=1e-6, abs=1e-9)


def test_accelerates_own_fsdp_is_refused_before_anything_runs_pointing_to_train_fsdp(tmp_path, cli, monkeypatch):
    """accelerate turns its FSDP on only for accelerators (CPU processes asked for it would replicate the model)
    and wraps the model its own way: `accelerate launch --use_fsdp` stops with one line naming `train --fsdp`."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from dail_harness.errors import HarnessError
    from dail_harness.training.engine import refuse_accelerate_fsdp

    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    code, _, err = cli("train", "--method", "dail", "--data", data, "--max-steps", "1", *TRAIN, "--out", tmp_path / "r")
    assert code == 2 and err.startswith("error: accelerate's own FSDP was asked for") and "train --fsdp" in err
    assert not (tmp_path / "r").exists()
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    with pytest.raises(HarnessError, match="pass `train --fsdp`"):
        refuse_accelerate_fsdp(SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=8))
    refuse_accelerate_fsdp(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, num_processes=8))  # DDP runs


def test_max_steps_overrides_epochs_cycling_through_the_data_in_keyed_order():
    from dail_harness.training.plan import epoch_order, plan_steps

    # 3 items, 2 per step: an epoch is 2 steps ([2 items], [1 item]); 5 steps take 3 passes
    steps = plan_steps(3, epochs=1, seed=7, batch_size=1, per_step=2, max_steps=5)
    assert [e for e, _ in steps] == [0, 0, 1, 1, 2]
    for epoch in (0, 1):
        assert [i for _, g in steps[2 * epoch : 2 * epoch + 2] for (i,) in g] == epoch_order(3, 7, epoch)
    assert steps[4][1] == [[epoch_order(3, 7, 2)[0]], [epoch_order(3, 7, 2)[1]]]
    # a longer plan starts with every step of a shorter one, whichever of epochs / max_steps sets its length
    long = plan_steps(3, epochs=1, seed=7, batch_size=1, per_step=2, max_steps=40)
    assert len(long) == 40 and long[:5] == steps
    assert plan_steps(3, epochs=2, seed=7, batch_size=1, per_step=2) == steps[:4]
    assert plan_steps(3, epochs=1, seed=7, batch_size=1, per_step=2, max_steps=1) == steps[:1]
    assert plan_steps(0, epochs=1, seed=7, batch_size=1, per_step=2, max_steps=5) == []


def test_a_resumed_schedule_takes_the_rate_of_the_new_total(tmp_path):
    """An extended run (a larger total than its checkpoint's) continues on the new total's schedule."""
    from dail_harness.training.checkpoints import load_checkpoint, save_checkpoint
    from dail_harness.training.config import TrainConfig
    from dail_harness.training.engine import make_scheduler

    cfg = TrainConfig(method="nll", model="m", data="d", out="o", lr=1.0, warmup_steps=1)
    param = torch.nn.Parameter(torch.zeros(1))

    def schedule(total):
        opt = torch.optim.SGD([param], lr=cfg.lr)
        return opt, make_scheduler(cfg, opt, total)

    opt, sched = schedule(3)
    for _ in range(2):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5)  # linear to 0 at step 3: 1 - (2 - 1) / 2
    save_checkpoint(tmp_path, 2, {}, opt, sched)
    opt, sched = schedule(5)
    load_checkpoint(tmp_path / "checkpoints" / "step-2", opt, sched)
    assert sched.get_last_lr()[0] == opt.param_groups[0]["lr"] == pytest.approx(0.75)  # 1 - (2 - 1) / 4
    cfg.lr_schedule = "constant"
    assert [make_scheduler(cfg, schedule(1)[0], t).lr_lambdas[0](4) for t in (3, 9)] == [1.0, 1.0]


def test_checkpoints_keep_the_last_two_and_clear_what_a_kill_left(tmp_path):
    """A kill while a checkpoint was written (`.tmp-*`, `.tmp-sharded-N` of --fsdp) or deleted (`.old-step-N`)
    leaves a directory no resume reads; the next save removes it, and keeps the last two checkpoints."""
    from dail_harness.training.checkpoints import latest_checkpoint, save_checkpoint

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    root = tmp_path / "checkpoints"
    for stale in (".tmp-abc123", ".tmp-sharded-3", ".old-step-1"):
        (root / stale / "shards").mkdir(parents=True)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {}, opt, sched)
    assert sorted(p.name for p in root.iterdir()) == ["step-2", "step-3"]
    assert latest_checkpoint(tmp_path) == root / "step-3"


def test_a_run_recorded_before_warmup_clamp_resumes_as_it_was_clamped(tmp_path, cli):
    """A record without `warmup_clamp` (runs before it existed, all clamped) extends as before; asking for the
    other schedule is a change of settings, refused."""
    data = write_dsyn(tmp_path / "d.jsonl", n=3)
    args = ["train", "--method", "nll", "--data", data, "--out", tmp_path / "run", *TRAIN]
    assert cli(*args, "--max-steps", "2")[0] == 0
    record = tmp_path / "run" / "train_config.json"
    settings = json.loads(record.read_text())
    assert settings.pop("warmup_clamp") is True
    record.write_text(json.dumps(settings))
    code, _, err = cli(*args, "--max-steps", "3", "--no-warmup-clamp")
    assert code == 2 and "warmup_clamp" in err, err
    code, out, err = cli(*args, "--max-steps", "3")
    assert code == 0 and "resumed after step 2" in out, err


def test_a_finished_run_extends_with_more_steps_and_refuses_other_changes(tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl", n=3)
    args = ["train", "--method", "nll", "--data", data, "--lr-schedule", "constant", *TRAIN]
    assert cli(*args, "--out", tmp_path / "run", "--max-steps", "3")[0] == 0
    first = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    code, out, err = cli(*args, "--out", tmp_path / "run", "--max-steps", "5")
    assert code == 0, err
    assert "trained 5 steps (2.67 epochs, resumed after step 3)" in out  # 8 of 3 examples x 3 epochs: the last partial
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 5 and log[:3] == first
    code, out, err = cli(*args, "--out", tmp_path / "run", "--max-steps", "5")
    assert code == 0, err
    assert f"already finished: 5 steps in {tmp_path / 'run'}" in out and "pass a larger --max-steps" in out
    code, _, err = cli(*args, "--out", tmp_path / "run", "--max-steps", "4")
    assert code == 2 and "already holds 5 trained steps, more than the 4 this run plans" in err
    code, _, err = cli(*args, "--out", tmp_path / "run", "--max-steps", "6", "--lr", "1e-3")
    assert code == 2 and "lr: 0.005 -> 0.001" in err and "max_steps" not in err
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 5


def test_with_a_constant_rate_an_extended_run_is_the_fresh_longer_run(tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl", n=3)
    args = ["train", "--method", "nll", "--data", data, "--lr-schedule", "constant", *TRAIN]
    for out, steps in (("run", 3), ("run", 5), ("fresh", 5)):
        assert cli(*args, "--out", tmp_path / out, "--max-steps", steps)[0] == 0
    extended, fresh = (
        [json.loads(l) for l in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in ("run", "fresh")
    )
    assert [r["step"] for r in extended] == [r["step"] for r in fresh] == [1, 2, 3, 4, 5]
    for a, b in zip(fresh, extended):
        assert b["lr"] == a["lr"] and b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-8)


def test_an_adapter_records_its_base_as_an_absolute_path_and_a_moved_base_fails_at_once(
    tmp_path, cli, monkeypatch, tiny
):
    (tmp_path / "runs").mkdir()
    shutil.copytree(tiny[0], tmp_path / "runs" / "base")
    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    monkeypatch.chdir(tmp_path)
    args = ["train", "--method", "nll", "--data", data, "--max-steps", "1", *TRAIN]
    args[args.index("tiny-random")] = "runs/base"  # relative, as users type it
    assert cli(*args, "--out", "runs/ad")[0] == 0
    base = json.loads((tmp_path / "runs" / "ad" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(tmp_path / "runs" / "base")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    ev = ["eval", "--task", "aime24", "--model", "../runs/ad", "--limit", "1", "--n", "1", "--max-tokens", "2"]
    ev += ["--no-progress", "--grade-workers", "0"]
    code, _, err = cli(*ev, "--out", "ev1")
    assert code == 0, err
    (tmp_path / "runs" / "base").rename(tmp_path / "runs" / "moved")
    start = time.monotonic()
    code, _, err = cli(*ev, "--out", "ev2")
    assert time.monotonic() - start < 5
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"base model directory '{tmp_path / 'runs' / 'base'}' does not exist" in err
    assert not (tmp_path / "elsewhere" / "ev2" / "samples.jsonl").exists()


def test_empty_rows_are_one_error_naming_every_line_and_how_to_drop_them(tmp_path, cli):
    data = write_dsyn(tmp_path / "d.jsonl", n=5)
    rows = [json.loads(l) for l in data.read_text().splitlines()]
    rows[1]["trace"], rows[3]["trace"] = "", " \n"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = cli("train", "--method", "nll", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{data}: 2 rows with an empty 'trace' (lines 2, 4): nothing to train on" in err
    assert "rerun the `dail-harness generate` command" in err
    assert not (tmp_path / "run").exists()
    command = err.split("drop them: ")[1].split("; or rerun")[0]
    assert command.startswith("jq -c ") and command.endswith(f"{data} > kept.jsonl")
    if shutil.which("jq"):  # the hint works as printed
        subprocess.run(command, shell=True, cwd=tmp_path, check=True)
        kept = [json.loads(l)["problem_id"] for l in (tmp_path / "kept.jsonl").read_text().splitlines()]
        assert kept == ["p0", "p2", "p4"]


def test_training_plot_axes_integer_steps_units_log_scale_colours_and_legend_off_the_data(tmp_path):
    from dail_harness.training.curves import draw_training, line_colors, plot_training, y_scale

    assert y_scale([[1.0, 2.0], [3.0, 5.0]]) == ("linear", {})
    assert y_scale([[0.01, 0.02], [3.0, 5.0]]) == ("log", {})  # medians 0.015 and 4: over 100x apart
    assert y_scale([[-0.02, 0.01], [3.0, 5.0]]) == ("symlog", {"linthresh": 0.015})
    for n in (3, 12, 25):
        assert len(set(map(tuple, line_colors(n)))) == n
    rows = [
        {"step": s, "loss": 2.0 / s, "kl_ps": 1.5 / s, "kl_nr": 300.0 + s, "eval/t/pass@1": 0.25} for s in (1, 2, 3)
    ]
    runs = [{"run": f"r{i}", "method": "dail", "loss": "dail", "rows": rows} for i in range(6)]
    fig = draw_training(runs)
    fig.canvas.draw()
    loss, kl, evals = fig.axes
    assert [a.get_ylabel() for a in (loss, kl, evals)] == [
        "loss (nats/token)",
        "KL (nats/token)",
        "pass@k (%)",
    ]
    assert (loss.get_yscale(), kl.get_yscale()) == ("linear", "log")
    assert evals.get_lines()[0].get_ydata()[0] == 25.0
    lo, hi = kl.get_xlim()
    assert all(float(t).is_integer() for t in kl.get_xticks() if lo <= t <= hi)
    assert len({l.get_color() for l in kl.get_lines()}) == 12  # 6 runs x 2 terms, all distinct
    for ax in fig.axes:
        legend, label = ax.get_legend().get_window_extent(), ax.xaxis.label.get_window_extent()
        assert legend.y1 <= label.y0  # below the axes and its step label: it covers no data
    path = plot_training(runs, tmp_path / "t.png")
    assert path is not None and path.stat().st_size > 10_000


def closed_form_rate(schedule: str, step: int, warmup: int, total: int) -> float:
    """The rate (a fraction of the peak) of update `step` (from 0), written out: transformers' formulas."""
    if step < warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / (total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress


def scheduler_rates(total: int, **settings) -> list[float]:
    """The learning rate each of `total` updates takes under `make_scheduler` (peak lr 2.0)."""
    from dail_harness.training.config import TrainConfig
    from dail_harness.training.engine import make_scheduler

    cfg = TrainConfig(method="nll", model="m", data="d", out="o", lr=2.0, **settings)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(cfg, opt, total)
    rates = []
    for _ in range(total):
        rates.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_each_step_takes_the_closed_form_rate_of_its_schedule(schedule):
    rates = scheduler_rates(7, warmup_steps=2, lr_schedule=schedule)
    assert rates == pytest.approx([2.0 * closed_form_rate(schedule, s, 2, 7) for s in range(7)], abs=1e-12)
    if schedule == "cosine":  # half the peak half-way through the decay
        assert rates[2] == 2.0 and rates[2 + 5 // 2] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 2 / 5)))


@pytest.mark.parametrize("clamp", [True, False])
def test_a_run_shorter_than_its_warm_up_warms_up_over_its_own_steps_unless_unclamped(clamp):
    """5 warm-up steps, 3 steps: clamped, the warm-up spans the run's 3 steps; unclamped, transformers' schedule
    (the authors') warms up over 5, so each step takes a smaller rate."""
    rates = scheduler_rates(3, warmup_steps=5, warmup_clamp=clamp)
    warmup = 3 if clamp else 5
    assert rates == pytest.approx([2.0 * closed_form_rate("linear", s, warmup, 3) for s in range(3)], abs=1e-12)
    assert rates == pytest.approx([0.0, 2 / 3, 4 / 3] if clamp else [0.0, 0.4, 0.8], abs=1e-12)


def test_drop_last_leaves_out_each_epochs_partial_step():
    from dail_harness.errors import HarnessError
    from dail_harness.training.plan import epoch_order, plan_steps

    # online shape: 5 prompts, 2 per step (batch_size 2, one batch a step)
    kept = plan_steps(5, epochs=2, seed=3, batch_size=2, per_step=1)
    dropped = plan_steps(5, epochs=2, seed=3, batch_size=2, per_step=1, drop_last=True)
    assert [e for e, _ in kept] == [0, 0, 0, 1, 1, 1] and [len(g[0]) for _, g in kept] == [2, 2, 1] * 2
    assert [e for e, _ in dropped] == [0, 0, 1, 1] and all(len(g[0]) == 2 for _, g in dropped)
    for epoch in (0, 1):  # the same keyed order, its last item left out
        steps = dropped[2 * epoch : 2 * epoch + 2]
        assert [i for _, (b,) in steps for i in b] == epoch_order(5, 3, epoch)[:4]
    # offline shape: micro-batches of 1, 2 a step; the same rule counts examples
    assert len(plan_steps(5, epochs=1, seed=3, batch_size=1, per_step=2)) == 3
    assert len(plan_steps(5, epochs=1, seed=3, batch_size=1, per_step=2, drop_last=True)) == 2
    # a step with all its micro-batches but a short one is partial too: 15 examples, 2 x 4 a step
    assert [[len(b) for b in g] for _, g in plan_steps(15, epochs=1, seed=0, batch_size=2, per_step=4)] == [
        [2, 2, 2, 2],
        [2, 2, 2, 1],
    ]
    assert [
        [len(b) for b in g] for _, g in plan_steps(15, epochs=1, seed=0, batch_size=2, per_step=4, drop_last=True)
    ] == [[2, 2, 2, 2]]
    # --max-steps passes over the data as often as it takes, each pass without its partial step
    assert [e for e, _ in plan_steps(5, epochs=1, seed=3, batch_size=2, per_step=1, max_steps=5, drop_last=True)] == [
        0,
        0,
        1,
        1,
        2,
    ]
    with pytest.raises(HarnessError, match="every step would be dropped"):
        plan_steps(3, epochs=1, seed=0, batch_size=2, per_step=2, drop_last=True)


def test_the_engine_logs_the_cosine_rate_and_drops_partial_steps(tmp_path, cli):
    """5 examples, 2 a step, 2 epochs: with --drop-last 4 steps (2 an epoch), each at the cosine closed form."""
    data = write_dsyn(tmp_path / "d.jsonl", n=5)
    args = ["train", "--method", "nll", "--data", data, *TRAIN, "--epochs", "2", "--lr-schedule", "cosine"]
    code, out, err = cli(*args, "--drop-last", "--out", tmp_path / "run")
    assert code == 0, err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 0, 1, 1] and all(r["tokens"] > 0 for r in log)
    assert [r["lr"] for r in log] == pytest.approx([5e-3 * closed_form_rate("cosine", s, 1, 4) for s in range(4)])
    assert "trained 4 steps" in out
