"""GRPO against TRL's GRPOTrainer on the same tensors: advantages, every loss type, KL, mu > 1, gradients."""

import types
from collections import defaultdict

import pytest
import torch

from dail_harness.training.group_rl import bessel_std, group_advantages, token_weights
from dail_harness.training.losses import chunked_sums, make_loss

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
GRPOTrainer = trl_grpo.GRPOTrainer


class OneProcess:
    """The accelerator calls TRL's loss makes, for one process."""

    num_processes = 1
    sync_gradients = True

    def gather(self, t):
        return t.reshape(-1) if t.ndim == 0 else t

    def gather_for_metrics(self, t):
        return self.gather(t)

    def reduce(self, t, reduction="sum"):
        return t


def trl_self(per_token_logps, *, loss_type, beta, eps, eps_high, gas, max_len, bias_correction):
    """A stand-in `self` for GRPOTrainer._compute_loss: every attribute it reads, nothing else."""
    return types.SimpleNamespace(
        loss_type=loss_type,
        importance_sampling_level="token",
        beta=beta,
        epsilon_low=eps,
        epsilon_high=eps_high,
        max_completion_length=max_len,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        aux_loss_enabled=False,
        router_aux_loss_coef=0.0,
        _entropy_bonus_enabled=False,
        entropy_coef=0.0,
        use_adaptive_entropy=False,
        current_gradient_accumulation_steps=gas,
        model=types.SimpleNamespace(training=True),
        accelerator=OneProcess(),
        args=types.SimpleNamespace(delta=None, use_bias_correction_kl=bias_correction, steps_per_generation=gas),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (per_token_logps, torch.zeros_like(per_token_logps), None),
    )


def setup(seed=0, B=6, T=7, V=11, G=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64, requires_grad=True)
    ref_logits = logits.detach() + 0.3 * torch.randn(B, T, V, generator=g, dtype=torch.float64)
    old_logits = logits.detach() + 0.2 * torch.randn(B, T, V, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (B, T), generator=g)
    lengths = [7, 4, 6, 2, 7, 5]  # completion lengths (the rest is padding)
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths], dtype=torch.long)
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 1.0], dtype=torch.float64)  # the second group has zero std
    return logits, ref_logits, old_logits, targets, mask, rewards, G


def token_logp(logits, targets):
    return torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_equal_trl_including_zero_std_groups(scale):
    from trl.trainer.utils import nanstd

    _, _, _, _, _, rewards, G = setup()
    grouped = rewards.view(-1, G)
    mean = grouped.mean(1).repeat_interleave(G)
    std = nanstd(grouped, dim=1).repeat_interleave(G) if scale != "batch" else nanstd(rewards).expand_as(rewards)
    expected = rewards - mean if scale == "none" else (rewards - mean) / (std + 1e-4)
    got = group_advantages(rewards.view(-1, G).tolist(), scale, bessel_std(rewards.tolist()))
    assert torch.allclose(torch.tensor([a for g in got for a in g], dtype=torch.float64), expected, atol=1e-12)
    assert got[1] == [0.0, 0.0, 0.0]  # a group without signal gives no advantage, so no gradient


def ours(logits, ref_logits, targets, mask, adv, *, loss_type, micro, max_len, old=None, **options):
    """Our loss and the gradient of the logits, summed over micro-batches as the engine sums them."""
    loss = make_loss("grpo", options)
    lengths = mask.sum(1).tolist()
    B = len(lengths)
    totals = {"sequences": B, "tokens": sum(lengths), "micro_batches": -(-B // micro)}
    weights = token_weights(lengths, loss_type, micro_batch=micro, max_length=max_len, totals=totals)
    rows, cols = mask.nonzero(as_tuple=True)
    logp_all = torch.log_softmax(logits, -1)
    extras = {
        "advantage": adv[rows],
        "weight": torch.tensor([weights[r] for r in rows.tolist()], dtype=torch.float64),
        "share": torch.full((len(rows),), 1.0 / sum(lengths), dtype=torch.float64),
    }
    if old is not None:
        extras["old_logp"] = token_logp(old, targets)[rows, cols]
    head = torch.nn.Identity()  # the "hidden states" are the logits themselves here
    refs = {"reference": ref_logits[rows, cols]} if loss.contexts else {}
    sums = chunked_sums(logits[rows, cols], refs, targets[rows, cols], head, loss.terms_fn, loss.terms, 5, extras)
    out = loss.combine(sums, len(rows))
    out.loss.backward()
    del logp_all
    grad = logits.grad.clone()
    logits.grad = None
    return out, grad


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta,bias", [(0.0, False), (0.04, True), (0.04, False)])
@pytest.mark.parametrize("mu", [1, 2])
@pytest.mark.parametrize("gas", [1, 2])
def test_loss_and_gradients_equal_trl(loss_type, beta, bias, mu, gas):
    logits, ref_logits, old_logits, targets, mask, rewards, G = setup()
    adv = torch.tensor(
        [a for g in group_advantages(rewards.view(-1, G).tolist(), "group") for a in g], dtype=torch.float64
    )
    B, T = mask.shape
    micro = B // gas
    opts = {"beta": beta, "epsilon": 0.2, "epsilon_high": 0.28, "kl_bias_correction": bias}
    old = old_logits if mu > 1 else None  # mu > 1: the stored log-probs of the sampling policy
    got, grad = ours(
        logits, ref_logits, targets, mask, adv, loss_type=loss_type, micro=micro, max_len=T, old=old, **opts
    )
    # TRL: one call per micro-batch (gradient accumulation), the losses' gradients add up
    total = 0.0
    for start in range(0, B, micro):
        sl = slice(start, start + micro)
        per_token = token_logp(logits[sl], targets[sl])
        inputs = {
            "prompt_ids": torch.zeros(micro, 2, dtype=torch.long),
            "prompt_mask": torch.ones(micro, 2, dtype=torch.long),
            "completion_ids": targets[sl],
            "completion_mask": mask[sl],
            "advantages": adv[sl],
            "ref_per_token_logps": token_logp(ref_logits[sl], targets[sl]),
            "num_items_in_batch": mask.sum(),
        }
        if old is not None:
            inputs["old_per_token_logps"] = token_logp(old[sl], targets[sl])
        s = trl_self(
            per_token, loss_type=loss_type, beta=beta, eps=0.2, eps_high=0.28, gas=gas, max_len=T, bias_correction=bias
        )
        part = GRPOTrainer._compute_loss(s, None, inputs)
        part.backward()
        total += float(part.detach())
    assert float(got.loss.detach()) == pytest.approx(total, rel=1e-9, abs=1e-12)
    assert torch.allclose(grad, logits.grad, rtol=1e-7, atol=1e-12)
    if mu > 1:  # off-policy ratios: some tokens are clipped, and the stats say how many
        assert 0 < got.stats["clip_ratio"] <= 1


def test_on_policy_ratio_is_one_and_gradient_is_minus_advantage():
    """mu = 1 (no stored log-probs): the loss value is -sum(w A) and its gradient is -A * dlogp, as TRL's."""
    logits, ref_logits, _, targets, mask, rewards, G = setup()
    adv = torch.tensor(
        [a for g in group_advantages(rewards.view(-1, G).tolist(), "group") for a in g], dtype=torch.float64
    )
    out, _ = ours(logits, ref_logits, targets, mask, adv, loss_type="grpo", micro=6, max_len=7)
    assert float(out.loss.detach()) == pytest.approx(-float(adv.mean()), abs=1e-12)
    assert out.stats["clip_ratio"] == 0 and out.stats["ratio_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_weights_sum_to_each_loss_types_normaliser(loss_type):
    lengths = [3, 0, 5, 2]  # the second is a masked (truncated) completion
    totals = {"sequences": 4, "tokens": 10, "micro_batches": 2}
    w = token_weights(lengths, loss_type, micro_batch=2, max_length=8, totals=totals)
    total = sum(wi * n for wi, n in zip(w, lengths))  # the loss if every token's surrogate were 1
    expected = {"grpo": 3 / 4, "bnpo": (1 + 1) / 2, "dr_grpo": 10 / (4 * 8), "dapo": 1.0}[loss_type]
    assert total == pytest.approx(expected, rel=1e-12)
