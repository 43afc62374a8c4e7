"""Keyed sampling: determinism, the right distribution, top-p and presence penalty."""

import numpy as np
import torch
from scipy import stats

from dail_harness.sampling import apply_presence_penalty, keyed_gumbel_sample, keyed_uniform, stable_key, top_p_mask


def test_stable_key_is_stable():
    assert stable_key("sample", 0, "aime24/2024-I-1", 3) == stable_key("sample", 0, "aime24/2024-I-1", 3)
    assert stable_key("a", 1) != stable_key("a", 2)
    assert (
        stable_key("dail")
        == int.from_bytes(__import__("hashlib").blake2b(b"dail", digest_size=8).digest(), "little") & 0x7FFFFFFFFFFFFFFF
    )


def test_keyed_uniform_is_a_pure_function_of_key_position_token():
    keys = torch.tensor([stable_key(i) for i in range(4)])
    pos = torch.tensor([0, 5, 5, 9])
    a = keyed_uniform(keys, pos, 1000)
    b = keyed_uniform(keys.flip(0), pos.flip(0), 1000).flip(0)  # other batch order
    c = keyed_uniform(keys[2:3], pos[2:3], 1000)  # row alone
    assert torch.equal(a, b) and torch.equal(a[2:3], c)
    assert not torch.equal(a[1], a[2])  # different keys, same position
    assert ((a > 0) & (a < 1)).all()


def _murmur_uniform(key: int, position: int, token: int) -> float:
    """The keyed noise written out in Python integers (the definition the tensor code must reproduce)."""
    m = 0xFFFFFFFF

    def fmix(h: int) -> int:
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & m
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & m
        return h ^ (h >> 16)

    row = fmix(fmix((key & m) ^ fmix((position * 0x9E3779B1 + 0x7F4A7C15) & m)) ^ ((key >> 32) & m))
    bits = fmix(fmix(row ^ ((token * 0x27D4EB2F) & m)) ^ row)
    return float((np.float32(bits >> 8) + np.float32(0.5)) * np.float32(1 / (1 << 24)))  # in float32, as defined


def test_keyed_uniform_equals_its_definition_in_every_row_chunk():
    """On a CPU the noise is made a few rows at a time (151,936 tokens: 3 rows per chunk, 7 rows = 3 chunks)."""
    keys = [stable_key("chunk", i) for i in range(7)]
    positions = [0, 1, 17, 255, 4096, 3, 99]
    for vocab in (151_936, 50):
        u = keyed_uniform(torch.tensor(keys), torch.tensor(positions), vocab)
        for row in range(7):
            for token in {0, 1, vocab // 2, vocab - 1, (row * 7919) % vocab}:
                assert float(u[row, token]) == _murmur_uniform(keys[row], positions[row], token)


def test_keyed_uniform_is_uniform():
    keys = torch.tensor([stable_key("u", i) for i in range(200)])
    u = keyed_uniform(keys, torch.arange(200), 500).flatten().numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # neighbouring tokens and positions are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


def test_gumbel_samples_follow_softmax_with_temperature():
    torch.manual_seed(0)
    logits = torch.randn(12) * 2
    T, N = 0.7, 20000
    keys = torch.tensor([stable_key("g", i) for i in range(N)])
    toks = keyed_gumbel_sample(logits.expand(N, -1), keys, torch.zeros(N, dtype=torch.long), T, 1.0)
    counts = np.bincount(toks.numpy(), minlength=12)
    probs = torch.softmax(logits.double() / T, -1).numpy()
    expected = probs * N
    keep = expected >= 5
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3
    assert counts[~keep].sum() <= max(20, 3 * expected[~keep].sum())


def test_top_p_matches_reference_and_sampling_respects_it():
    torch.manual_seed(1)
    logits = torch.randn(3, 50)
    for top_p in (0.1, 0.5, 0.9, 0.999):
        mask = top_p_mask(logits, top_p)
        for row in range(3):
            p = torch.softmax(logits[row].double(), -1).numpy()
            order = np.argsort(-p)
            keep, mass = set(), 0.0
            for t in order:  # smallest prefix of the sorted tokens with mass >= top_p
                keep.add(int(t))
                mass += p[t]
                if mass >= top_p:
                    break
            assert {int(i) for i in torch.nonzero(~mask[row])} == keep
    keys = torch.tensor([stable_key("p", i) for i in range(2000)])
    toks = keyed_gumbel_sample(logits[0].expand(2000, -1), keys, torch.zeros(2000, dtype=torch.long), 1.0, 0.5)
    allowed = torch.nonzero(~top_p_mask(logits[0:1], 0.5)[0]).flatten().tolist()
    assert set(toks.tolist()) <= set(allowed)


def test_greedy_and_presence_penalty():
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    keys = torch.tensor([1, 2])
    assert keyed_gumbel_sample(logits, keys, torch.tensor([0, 0]), 0.0, 1.0).tolist() == [1, 1]
    generated = torch.tensor([[1, 1], [0, 0]])
    out = apply_presence_penalty(logits, generated, 1.5)
    assert torch.allclose(out, torch.tensor([[1.0, 1.5, 2.0], [-0.5, 3.0, 2.0]]))  # once per token, not per count
    assert apply_presence_penalty(logits, generated, 0.0) is logits


def test_top_k_then_top_p_matches_a_float64_reference_and_sampling_follows_it():
    """vLLM's order: temperature, top-k (ties with the k-th kept), then top-p over the renormalised top-k."""
    from scipy import stats

    from dail_harness.sampling import top_k_mask, warp_logits

    torch.manual_seed(2)
    logits = torch.randn(4, 60)
    logits[3, :5] = 3.0  # a tie at the k-th value
    for k, top_p, temp in ((1, 1.0, 1.0), (5, 1.0, 0.7), (20, 0.9, 1.0), (60, 0.5, 1.3), (0, 0.8, 1.0)):
        got = warp_logits(logits, temp, top_p, k)
        for row in range(4):
            x = logits[row].double() / temp
            kth = torch.sort(x, descending=True).values[k - 1] if 0 < k < 60 else -float("inf")
            kept = [t for t in range(60) if x[t] >= kth]
            p = torch.softmax(x[kept], -1).numpy()
            order = np.argsort(-p, kind="stable")
            nucleus, mass = set(), 0.0
            for i in order:
                nucleus.add(kept[int(i)])
                mass += p[i]
                if mass >= top_p:
                    break
            assert {int(t) for t in torch.nonzero(torch.isfinite(got[row]))} == nucleus, (k, top_p, row)
    assert top_k_mask(logits, 5)[3].tolist() == [False] * 5 + [True] * 55  # the tie at 3.0 kept whole
    # keyed draws with top-k 3 at temperature 1 follow the renormalised top-3 distribution
    keys = torch.tensor([stable_key("k", i) for i in range(6000)])
    row = logits[0].expand(6000, -1)
    toks = keyed_gumbel_sample(row, keys, torch.zeros(6000, dtype=torch.long), 1.0, 1.0, 3)
    top3 = torch.topk(logits[0], 3).indices.tolist()
    counts = [int((toks == t).sum()) for t in top3]
    assert sum(counts) == 6000
    expected = torch.softmax(logits[0, top3].double(), -1).numpy() * 6000
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_every_command_turns_its_sampling_settings_into_back_end_parameters_in_one_place():
    """eval, generate, data hints and train declare the same settings (their own defaults) and convert them
    with one method: the values each chose arrive whole, presence penalty included (three commands used to
    hard-code 0)."""
    from dail_harness.dsyn.generate import GenerateConfig
    from dail_harness.dsyn.hints import HintsConfig
    from dail_harness.eval.pipeline import EvalConfig
    from dail_harness.sampling import SamplingParams
    from dail_harness.training.config import TrainConfig

    chosen = dict(temperature=0.7, top_p=0.8, top_k=5, presence_penalty=0.5, max_tokens=33, seed=9)
    configs = [
        EvalConfig(task=["aime24"], model="m", out="o", n=3, stop=["###"], **chosen),
        GenerateConfig(data="d", model="m", out="o", mode="direct", n=3, **chosen),
        HintsConfig(data="d", model="m", out="o", **chosen),
        TrainConfig(method="grpo", model="m", data="d", out="o", **chosen),
    ]
    for cfg in configs:
        stop = ["###"] if isinstance(cfg, EvalConfig) else []
        n = 1 if isinstance(cfg, HintsConfig) else 3
        params = cfg.params() if isinstance(cfg, EvalConfig) else cfg.sampling_params(n)
        assert params == SamplingParams(n=n, stop=stop, **chosen), type(cfg).__name__
    assert configs[3].sampling_params(2, max_tokens=4).max_tokens == 4  # a phase's own length


def test_each_command_declares_its_own_defaults():
    from dail_harness.dsyn.generate import GenerateConfig
    from dail_harness.dsyn.hints import HintsConfig
    from dail_harness.eval.pipeline import EvalConfig
    from dail_harness.training.config import TrainConfig

    def defaults(cfg):
        return cfg.temperature, cfg.top_p, cfg.top_k, cfg.presence_penalty

    assert defaults(EvalConfig(task=["t"], model="m", out="o")) == (0.6, 0.95, 0, 1.5)  # the paper's protocol
    assert defaults(GenerateConfig(data="d", model="m", out="o")) == (1.0, 1.0, 0, 0.0)
    assert defaults(HintsConfig(data="d", model="m", out="o")) == (0.6, 0.95, 0, 0.0)
    train = TrainConfig(method="grpo", model="m", data="d", out="o")
    assert defaults(train) == (1.0, 1.0, 0, 0.0)
    assert (train.eval_temperature, train.eval_top_p, train.eval_presence_penalty) == (0.6, 0.95, 1.5)


def test_a_presence_penalty_the_run_would_ignore_is_refused(cli, tmp_path):
    code, _, err = cli(
        "generate", "--data", tmp_path / "d.jsonl", "--model", "tiny-random", "--out", tmp_path / "o.jsonl",
        "--mode", "mixed", "--presence-penalty", "1",
    )  # fmt: skip
    assert code == 2 and err.startswith("error: --presence-penalty") and "--mode direct" in err, err
    code, _, err = cli(
        "train", "--method", "dail", "--model", "tiny-random", "--data", tmp_path / "d.jsonl",
        "--out", tmp_path / "r", "--presence-penalty", "1",
    )  # fmt: skip
    assert code == 2 and err.startswith("error: --presence-penalty: this run does not use it"), err
