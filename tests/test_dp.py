"""Tests of mu_lib.dp: per-sample gradients, clipping, noise, DP-SGD training and accounting.

References: a Python loop of autograd over single examples, plain SGD, closed forms of the
Gaussian mechanism's RDP, Opacus's own accountants and trainer, and the pinned value of
``/work/shared/reference/certified-removal-dp-auditing.md`` §5.5 (q = 256/60000, σ = 1.1,
T = 14062, δ = 1e-5 -> ε = 2.597 with Opacus's RDP accountant).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from mu_lib import dp, models, train


def _mlp(seed: int = 0) -> nn.Module:
    return models.make_model("mlp", num_classes=4, in_channels=1, image_size=3, seed=seed)


def _cnn(seed: int = 0) -> nn.Module:
    return models.make_model("small_cnn", num_classes=3, in_channels=1, image_size=8, seed=seed)


def _data(n: int, image_size: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, image_size, image_size, generator=g), torch.randint(0, k, (n,), generator=g)


def _loop_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [k for k, _ in model.named_parameters()]
    rows = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        rows.append(torch.autograd.grad(loss, list(model.parameters())))
    return {k: torch.stack([r[j] for r in rows]) for j, k in enumerate(names)}


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


# ---------------------------------------------------------------------------- per-sample grads

@pytest.mark.parametrize("make, size, k", [(_mlp, 3, 4), (_cnn, 8, 3)])
def test_per_sample_grads_equal_a_loop_of_autograd(make, size, k):
    model = make()
    x, y = _data(12, size, k)
    fast, losses = dp.per_sample_grads(model, x, y, return_losses=True)
    slow = _loop_grads(model, x, y)
    assert list(fast) == list(slow)
    for name in slow:
        assert fast[name].shape == slow[name].shape
        torch.testing.assert_close(fast[name], slow[name], atol=1e-6, rtol=0)
    torch.testing.assert_close(losses, F.cross_entropy(model(x), y, reduction="none").detach(), atol=1e-6, rtol=0)
    # their mean is the gradient of the mean loss
    batch = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for g, name in zip(batch, slow):
        torch.testing.assert_close(fast[name].mean(0), g, atol=1e-6, rtol=0)


def test_per_sample_grads_of_an_empty_batch_are_empty():
    g = dp.per_sample_grads(_mlp(), torch.zeros(0, 1, 3, 3), torch.zeros(0, dtype=torch.long))
    assert all(v.shape[0] == 0 for v in g.values())


# ---------------------------------------------------------------------------- clipping and noise

def test_clipped_norms_are_at_most_c():
    g = torch.Generator().manual_seed(1)
    scales = torch.logspace(-3, 3, 50)[:, None]
    grads = {"a": torch.randn(50, 7, generator=g) * scales,
             "b": torch.randn(50, 3, 2, generator=g) * scales[:, :, None]}
    for c in (1e-3, 0.5, 1.0, 40.0):
        norms = dp.per_sample_norms(dp.clip_grads(grads, max_grad_norm=c))
        assert (norms <= c * (1 + 1e-6)).all()
        raw = dp.per_sample_norms(grads)
        big = raw > c
        # clipped gradients have norm C * |g| / (|g| + 1e-6), Opacus's stabilised factor
        torch.testing.assert_close(norms[big], c * raw[big] / (raw[big] + 1e-6), rtol=1e-5, atol=0)
        torch.testing.assert_close(norms[~big], raw[~big])


def test_per_sample_norms_flatten_all_parameters():
    grads = {"a": torch.tensor([[1.0, 2.0], [0.0, 0.0]]), "b": torch.tensor([[[2.0]], [[3.0]]])}
    torch.testing.assert_close(dp.per_sample_norms(grads), torch.tensor([3.0, 3.0]))


def test_clipping_is_the_identity_below_c():
    grads = dp.per_sample_grads(_mlp(), *_data(16, 3, 4))
    c = 2.0 * float(dp.per_sample_norms(grads).max())
    clipped = dp.clip_grads(grads, max_grad_norm=c)
    for k in grads:
        assert torch.equal(clipped[k], grads[k])
    inf = dp.clip_grads(grads, max_grad_norm=math.inf)
    assert all(torch.equal(inf[k], grads[k]) for k in grads)


def test_noise_std_on_the_sum_is_sigma_c():
    model = nn.Linear(100, 100)  # 10,100 coordinates
    x, y = torch.randn(8, 100, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    sigma, c, b_exp = 1.3, 0.7, 10.0
    noisy, _ = dp.dpsgd_gradient(model, x, y, noise_multiplier=sigma, max_grad_norm=c, expected_batch_size=b_exp,
                                 generator=torch.Generator().manual_seed(5))
    clipped = dp.clip_grads(dp.per_sample_grads(model, x, y), max_grad_norm=c)
    noise = torch.cat([(noisy[k] * b_exp - clipped[k].sum(0)).flatten() for k in clipped]).double().numpy()
    n = noise.size
    # (n - 1) s^2 / (sigma C)^2 follows chi-square(n - 1): a 99.9 % interval for the variance
    stat = (n - 1) * noise.var(ddof=1) / (sigma * c) ** 2
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n - 1)
    assert lo < stat < hi
    assert abs(noise.mean()) < 4 * sigma * c / math.sqrt(n)
    # and with sigma = 0 there is no noise at all
    quiet, _ = dp.dpsgd_gradient(model, x, y, noise_multiplier=0.0, max_grad_norm=c, expected_batch_size=b_exp)
    for k in clipped:
        torch.testing.assert_close(quiet[k] * b_exp, clipped[k].sum(0), atol=1e-6, rtol=1e-6)


def test_add_noise_draws_like_opacus():
    from opacus.optimizers.optimizer import _generate_noise

    summed = {"w": torch.zeros(3, 4), "b": torch.zeros(4)}
    ours = dp.add_noise(summed, noise_multiplier=0.9, max_grad_norm=2.0, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    theirs = {k: _generate_noise(std=1.8, reference=v, generator=gen) for k, v in summed.items()}
    for k in summed:
        assert torch.equal(ours[k], theirs[k])


# ---------------------------------------------------------------------------- one step, training

def test_step_without_noise_or_clipping_is_plain_sgd():
    model = _cnn()
    x, y = _data(10, 8, 3)
    grad, _ = dp.dpsgd_gradient(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf, expected_batch_size=10)
    ref = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for (k, _), r in zip(model.named_parameters(), ref):
        torch.testing.assert_close(grad[k], r, atol=1e-6, rtol=1e-5)
    # one step of dpsgd_fit with q = 1 (the batch is the whole data, B = B_exp = N) equals one SGD step
    a, b = _cnn(), _cnn()
    run = dp.dpsgd_fit(a, x, y, noise_multiplier=0.0, max_grad_norm=math.inf, sample_rate=1.0, steps=1, lr=0.3)
    assert run.batch_sizes.tolist() == [10]
    opt = torch.optim.SGD(b.parameters(), lr=0.3)
    F.cross_entropy(b(x), y).backward()
    opt.step()
    assert _max_diff(a, b) < 1e-6


def test_dpsgd_divides_by_the_expected_batch_size():
    model = _mlp()
    x, y = _data(6, 3, 4)
    grad, _ = dp.dpsgd_gradient(model, x, y, noise_multiplier=0.0, max_grad_norm=math.inf, expected_batch_size=15)
    ref = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), list(model.parameters()))
    for (k, _), r in zip(model.named_parameters(), ref):
        torch.testing.assert_close(grad[k], r / 15, atol=1e-6, rtol=1e-5)


def test_full_batch_dpsgd_without_noise_equals_train_fit():
    x, y = _data(40, 3, 4, seed=2)
    a, b = _mlp(1), _mlp(1)
    dp.dpsgd_fit(a, x, y, noise_multiplier=0.0, max_grad_norm=math.inf, sample_rate=1.0, epochs=5, lr=0.2,
                 momentum=0.5)
    train.fit(b, x, y, epochs=5, batch_size=40, lr=0.2, momentum=0.5, schedule="constant", seed=0)
    assert _max_diff(a, b) < 1e-5


def test_poisson_sampler_includes_each_example_with_probability_q():
    n, q, steps = 200, 0.1, 2000
    s = dp.PoissonSampler(n, sample_rate=q, steps=steps, generator=torch.Generator().manual_seed(0))
    counts = np.zeros(n)
    sizes = []
    for batch in s:
        assert len(set(batch)) == len(batch) and all(0 <= i < n for i in batch)
        counts[batch] += 1
        sizes.append(len(batch))
    assert len(sizes) == steps == len(s)
    # inclusion counts are Binomial(steps, q) for every example
    assert stats.chisquare(counts).pvalue > 1e-3
    assert abs(counts.mean() / steps - q) < 3 * math.sqrt(q * (1 - q) / (steps * n))
    assert abs(np.var(sizes) / (n * q * (1 - q)) - 1) < 0.15  # batch sizes are Binomial(n, q)


def test_training_is_deterministic_given_the_seed():
    x, y = _data(60, 3, 4)
    runs = [dp.dpsgd_fit(_mlp(), x, y, noise_multiplier=1.0, max_grad_norm=0.5, sample_rate=0.2, steps=6,
                         seed=s) for s in (7, 7, 8)]
    assert _max_diff(runs[0].model, runs[1].model) == 0.0
    assert np.array_equal(runs[0].batch_sizes, runs[1].batch_sizes)
    assert _max_diff(runs[0].model, runs[2].model) > 1e-4


def test_steps_for_epochs():
    assert dp.dpsgd_steps(epochs=60, sample_rate=256 / 60000) == 14062
    assert dp.dpsgd_steps(epochs=3, sample_rate=0.25) == 12
    assert dp.dpsgd_steps(epochs=0.01, sample_rate=0.5) == 1
    x, y = _data(20, 3, 4)
    assert dp.dpsgd_fit(_mlp(), x, y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25, epochs=2).steps == 8


# ---------------------------------------------------------------------------- Opacus agrees

def test_opacus_and_from_scratch_agree_without_noise_and_clipping():
    x, y = _data(80, 8, 3, seed=4)
    a, b = _cnn(2), _cnn(2)
    big_c = 1e6
    assert float(dp.per_sample_norms(dp.per_sample_grads(a, x, y)).max()) < big_c / 100
    ra = dp.dpsgd_fit(a, x, y, noise_multiplier=0.0, max_grad_norm=big_c, sample_rate=0.25, steps=8, lr=0.2, seed=1)
    rb = dp.dpsgd_fit_opacus(b, x, y, noise_multiplier=0.0, max_grad_norm=big_c, sample_rate=0.25, steps=8, lr=0.2,
                             seed=1)
    assert np.array_equal(ra.batch_sizes, rb.batch_sizes)
    assert _max_diff(ra.model, rb.model) < 1e-5
    np.testing.assert_allclose(ra.losses, rb.losses, atol=1e-5)
    assert rb.model is b and type(b) is type(a)
    assert not any(hasattr(p, "grad_sample") for p in b.parameters())  # Opacus's hooks are gone


def test_opacus_and_from_scratch_agree_with_noise_and_clipping():
    # Same batches and same noise stream: the two implementations agree up to float rounding.
    x, y = _data(80, 8, 3, seed=5)
    a, b = _cnn(3), _cnn(3)
    kw = dict(noise_multiplier=1.1, max_grad_norm=0.5, sample_rate=0.2, steps=10, lr=0.1, momentum=0.5, seed=9)
    ra = dp.dpsgd_fit(a, x, y, **kw)
    rb = dp.dpsgd_fit_opacus(b, x, y, **kw)
    assert np.array_equal(ra.batch_sizes, rb.batch_sizes)
    assert _max_diff(ra.model, rb.model) < 1e-5
    assert _max_diff(ra.model, _cnn(3)) > 1e-2  # and it did train
    # Opacus's own accountant, fed by its optimizer's step hook, gives our epsilon
    assert rb.accountant.history == [(1.1, 0.2, 10)]
    assert rb.accountant.get_epsilon(delta=1e-5) == pytest.approx(ra.epsilon(1e-5), abs=1e-12)


def test_empty_batches_are_noise_only_in_both():
    x, y = _data(4, 3, 4)
    a, b = _mlp(), _mlp()
    kw = dict(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.2, steps=8, lr=0.1, seed=1)
    ra = dp.dpsgd_fit(a, x, y, **kw)
    dp.dpsgd_fit_opacus(b, x, y, **kw)
    assert (ra.batch_sizes == 0).any()
    assert np.isnan(ra.losses[ra.batch_sizes == 0]).all() and np.isfinite(ra.losses[ra.batch_sizes > 0]).all()
    assert _max_diff(a, b) < 1e-6


# ---------------------------------------------------------------------------- accounting

def test_epsilon_pinned_value():
    eps = dp.dpsgd_epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14062, delta=1e-5)
    assert eps == pytest.approx(2.597, abs=1e-3)


def test_epsilon_reference_table_is_monotone_in_sigma():
    q, steps = 256 / 60000, 14062
    got = [dp.dpsgd_epsilon(noise_multiplier=s, sample_rate=q, steps=steps, delta=1e-5) for s in (0.8, 1.1, 2, 4)]
    np.testing.assert_allclose(got, [5.00, 2.60, 1.11, 0.49], atol=0.006)
    assert all(a > b for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("accountant", dp.ACCOUNTANTS)
def test_epsilon_decreases_in_sigma_and_increases_in_steps(accountant):
    kw = dict(sample_rate=0.01, delta=1e-5, accountant=accountant)
    by_sigma = [dp.dpsgd_epsilon(noise_multiplier=s, steps=500, **kw) for s in (0.7, 1.0, 1.5, 3.0)]
    by_steps = [dp.dpsgd_epsilon(noise_multiplier=1.0, steps=t, **kw) for t in (50, 200, 800, 3000)]
    assert all(a > b for a, b in zip(by_sigma, by_sigma[1:]))
    assert all(a < b for a, b in zip(by_steps, by_steps[1:]))
    assert all(e > 0 for e in by_sigma + by_steps)


def test_epsilon_edge_cases():
    assert dp.dpsgd_epsilon(noise_multiplier=0.0, sample_rate=0.1, steps=10, delta=1e-5) == math.inf
    assert dp.dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0.0


def test_full_batch_rdp_is_alpha_t_over_two_sigma_squared():
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    sigma, steps, delta = 1.7, 25, 1e-6
    orders = np.array(RDPAccountant.DEFAULT_ALPHAS, dtype=float)
    rdp = np.asarray(compute_rdp(q=1.0, noise_multiplier=sigma, steps=steps, orders=list(orders)))
    np.testing.assert_allclose(rdp, orders * steps / (2 * sigma ** 2), rtol=1e-12)
    # dpsgd_epsilon at q = 1 is the conversion of that closed form
    closed = get_privacy_spent(orders=list(orders), rdp=list(orders * steps / (2 * sigma ** 2)), delta=delta)[0]
    assert dp.dpsgd_epsilon(noise_multiplier=sigma, sample_rate=1.0, steps=steps, delta=delta) == pytest.approx(
        closed, rel=1e-12)


def test_noise_multiplier_for_a_target_epsilon():
    for target in (0.5, 2.0, 8.0):
        sigma = dp.dpsgd_noise_multiplier(target_epsilon=target, delta=1e-5, sample_rate=0.02, steps=500)
        eps = dp.dpsgd_epsilon(noise_multiplier=sigma, sample_rate=0.02, steps=500, delta=1e-5)
        assert target - 0.01 - 1e-9 <= eps <= target


# ---------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("kw, match", [
    (dict(max_grad_norm=0.0), "max_grad_norm"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),
    (dict(max_grad_norm=float("nan")), "max_grad_norm"),
    (dict(noise_multiplier=-0.1), "noise_multiplier"),
    (dict(noise_multiplier=float("nan")), "noise_multiplier"),
    (dict(max_grad_norm=math.inf), "inf"),
    (dict(sample_rate=0.0), "sample_rate"),
    (dict(sample_rate=1.5), "sample_rate"),
    (dict(steps=None), "exactly one of epochs and steps"),
    (dict(epochs=1.0), "exactly one of epochs and steps"),
    (dict(lr=0.0), "lr"),
])
def test_bad_hyperparameters_raise(kw, match):
    x, y = _data(10, 3, 4)
    args = dict(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=2) | kw
    for fit in (dp.dpsgd_fit, dp.dpsgd_fit_opacus):
        with pytest.raises(ValueError, match=match):
            fit(_mlp(), x, y, **args)


def test_accounting_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"valid accountants are \['rdp', 'prv', 'gdp'\]"):
        dp.dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=1e-5, accountant="moments")
    with pytest.raises(ValueError, match="sample_rate"):
        dp.dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.0, steps=10, delta=1e-5)
    with pytest.raises(ValueError, match="noise_multiplier"):
        dp.dpsgd_epsilon(noise_multiplier=-1.0, sample_rate=0.1, steps=10, delta=1e-5)
    with pytest.raises(ValueError, match="delta"):
        dp.dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=0.0)
    with pytest.raises(ValueError, match="steps"):
        dp.dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=-1, delta=1e-5)
    with pytest.raises(ValueError, match="valid accountants"):
        dp.dpsgd_noise_multiplier(target_epsilon=1.0, delta=1e-5, sample_rate=0.1, steps=10, accountant="x")
    with pytest.raises(ValueError, match="target_epsilon"):
        dp.dpsgd_noise_multiplier(target_epsilon=0.0, delta=1e-5, sample_rate=0.1, steps=10)
    with pytest.raises(ValueError, match="max_grad_norm"):
        dp.clip_grads({"w": torch.ones(2, 2)}, max_grad_norm=0.0)


def test_batch_norm_is_rejected_with_advice():
    net = models.make_model("resnet9", num_classes=10, in_channels=3, image_size=32, seed=0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for fit in (dp.dpsgd_fit, dp.dpsgd_fit_opacus):
        with pytest.raises(ValueError, match="batch-norm.*GroupNorm"):
            fit(net, x, y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=1)


def test_nan_loss_raises():
    x, y = _data(40, 3, 4)
    for fit in (dp.dpsgd_fit, dp.dpsgd_fit_opacus):
        with pytest.raises(FloatingPointError, match="loss became"):
            fit(_mlp(), x * 1e4, y, noise_multiplier=0.0, max_grad_norm=1e30, sample_rate=0.5, steps=20, lr=1e30)


def test_bad_data_raise():
    x, y = _data(10, 3, 4)
    with pytest.raises(ValueError, match="disagree in length"):
        dp.dpsgd_fit(_mlp(), x, y[:5], noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        dp.dpsgd_fit(_mlp(), x * float("nan"), y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5, steps=1)
