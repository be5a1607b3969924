"""Differentially private SGD (Abadi et al. 2016), from scratch and with Opacus, and its accounting.

One DP-SGD step on a Poisson-sampled batch ``B`` (each example kept independently with
probability ``q``) is

    g_i = ∇ℓ(θ; x_i)                                   per-sample gradient (all parameters, flat)
    ḡ_i = g_i · min(1, C / (‖g_i‖ + 1e-6))             flat clipping, Opacus's constant
    g̃   = (Σ_{i∈B} ḡ_i + N(0, σ² C² I)) / (q N)        noise on the sum, divided by the EXPECTED size
    θ  ← θ − η g̃

The pieces are public: :func:`per_sample_grads` (``torch.func.vmap`` of ``torch.func.grad`` over
``functional_call``), :func:`per_sample_norms`, :func:`clip_grads`, :func:`add_noise`,
:func:`dpsgd_gradient` and the batch sampler :class:`PoissonSampler`. :func:`dpsgd_fit` trains
with them; :func:`dpsgd_fit_opacus` trains the same way with Opacus's ``PrivacyEngine`` on the
*same* Poisson-sampled batches and the same noise stream, so that the two can be compared step
for step. :func:`dpsgd_epsilon` and :func:`dpsgd_noise_multiplier` call Opacus's accountants.

Example:
    >>> from mu_lib import models
    >>> net = models.make_model("logreg", num_classes=3, in_channels=1, image_size=2, seed=0)
    >>> x, y = torch.randn(64, 1, 2, 2), torch.randint(0, 3, (64,))
    >>> run = dpsgd_fit(net, x, y, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25,
    ...                 epochs=2, lr=0.5, seed=0)
    >>> run.steps, round(run.epsilon(1e-5), 2)
    (8, 6.25)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import runtime
from mu_lib.models import has_batchnorm
from mu_lib.train import check_xy

__all__ = [
    "ACCOUNTANTS",
    "CLIP_STABILITY",
    "DPSGDRun",
    "PoissonSampler",
    "check_dp_model",
    "per_sample_grads",
    "per_sample_norms",
    "clip_grads",
    "add_noise",
    "dpsgd_gradient",
    "dpsgd_steps",
    "dpsgd_fit",
    "dpsgd_fit_opacus",
    "dpsgd_epsilon",
    "dpsgd_noise_multiplier",
]

#: Opacus accountants accepted by :func:`dpsgd_epsilon`: Rényi DP (Mironov 2017; the sampled
#: Gaussian of Mironov et al. 2019), privacy random variables (numerical composition) and
#: Gaussian DP (a central-limit approximation).
ACCOUNTANTS = ("rdp", "prv", "gdp")

#: Added to the per-sample norm in the clipping factor, as Opacus does (``clip_and_accumulate``).
CLIP_STABILITY = 1e-6

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Grads = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

def check_dp_model(model: nn.Module) -> None:
    """Raise ``ValueError`` if ``model`` cannot be trained with per-sample gradients.

    Batch normalisation mixes the examples of a batch (each output depends on the batch's mean
    and variance), so a per-example gradient is not defined and the sensitivity of the summed
    gradient is not bounded by the clipping norm: DP-SGD's guarantee would not hold.

    Example:
        >>> check_dp_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: DP-SGD needs per-sample gradients, but the model has batch-norm layer(s) ['1'], ...
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if has_batchnorm(model):
        names = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        raise ValueError(f"DP-SGD needs per-sample gradients, but the model has batch-norm layer(s) {names[:5]}, "
                         "which mix the examples of a batch. Replace them with GroupNorm "
                         "(opacus.validators.ModuleValidator.fix(model) does this) or use a model without batch "
                         "norm, e.g. make_model('small_cnn', ...).")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters")


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None


def _check_noise_multiplier(noise_multiplier: float) -> None:
    sigma = _number("noise_multiplier", noise_multiplier)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier}")


def _check_privacy(noise_multiplier: float, max_grad_norm: float) -> None:
    _check_noise_multiplier(noise_multiplier)
    if math.isnan(_number("max_grad_norm", max_grad_norm)) or max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm (the clipping norm C) must be > 0, got {max_grad_norm}")
    if math.isinf(max_grad_norm) and noise_multiplier > 0:
        raise ValueError(f"max_grad_norm=inf (no clipping) only makes sense with noise_multiplier=0; the noise "
                         f"std sigma*C would be infinite (noise_multiplier={noise_multiplier})")


def _check_sample_rate(sample_rate: float) -> None:
    if not 0 < _number("sample_rate", sample_rate) <= 1:
        raise ValueError(f"sample_rate q must be in (0, 1], got {sample_rate}")


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; valid accountants are {list(ACCOUNTANTS)}")


def _check_delta(delta: float) -> None:
    if not 0 < _number("delta", delta) < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


# --------------------------------------------------------------------------------------------
# the pieces of one step
# --------------------------------------------------------------------------------------------

def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss_fn: LossFn = F.cross_entropy,
                     return_losses: bool = False) -> Grads | tuple[Grads, torch.Tensor]:
    """Gradient of the loss of every example separately: ``torch.func.vmap(torch.func.grad(...))``.

    The model is evaluated with ``torch.func.functional_call`` on one example at a time (a batch
    of one), so the result equals a Python loop of ``torch.autograd.grad`` over single examples.
    Random layers (dropout) draw independent randomness per example.

    Args:
        model: the network (its trainable parameters are differentiated; buffers are constants).
        x: inputs ``[B, ...]`` on the model's device.
        y: targets ``[B]``.
        loss_fn: ``(outputs [1, K], targets [1]) -> scalar`` loss of one example.
        return_losses: also return the per-example losses.

    Returns:
        ``{parameter name: tensor [B, *parameter.shape]}`` (and the losses ``[B]``).

    Example:
        >>> net = nn.Linear(3, 2)
        >>> g = per_sample_grads(net, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
        >>> {k: tuple(v.shape) for k, v in g.items()}
        {'weight': (5, 2, 3), 'bias': (5, 2)}
    """
    from torch.func import functional_call, grad_and_value, vmap

    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y disagree in length: x has {x.shape[0]} rows, y has {y.shape[0]}")
    params = _trainable(model)
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    if x.shape[0] == 0:
        grads = {k: torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device) for k, p in params.items()}
        losses = torch.zeros(0, device=x.device)
        return (grads, losses) if return_losses else grads

    def loss_one(p: dict, b: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, b), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    grads, losses = vmap(grad_and_value(loss_one), in_dims=(None, None, 0, 0), randomness="different")(
        params, buffers, x, y)
    return (grads, losses) if return_losses else grads


def per_sample_norms(grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """L2 norm of each example's gradient, all parameters flattened together: ``[B]``.

    Example:
        >>> per_sample_norms({"a": torch.tensor([[3.0], [0.0]]), "b": torch.tensor([[4.0, 0.0], [0.0, 1.0]])})
        tensor([5., 1.])
    """
    if not grads:
        raise ValueError("grads is empty: no parameters")
    per_param = [g.flatten(1).norm(2, dim=1) for g in grads.values()]
    return torch.stack(per_param, dim=1).norm(2, dim=1)


def clip_grads(grads: Mapping[str, torch.Tensor], *, max_grad_norm: float) -> Grads:
    """Flat per-sample clipping: ``g_i · min(1, C / (‖g_i‖ + 1e-6))`` (Opacus's ``clipping="flat"``).

    Every clipped per-sample gradient has norm at most ``C``; gradients with norm below
    ``C − 1e-6`` are returned unchanged (factor exactly 1). ``C = inf`` disables clipping.

    Args:
        grads: per-sample gradients ``{name: [B, ...]}``.
        max_grad_norm: the clipping norm ``C > 0``.

    Returns:
        The clipped per-sample gradients (new tensors).

    Example:
        >>> g = clip_grads({"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]])}, max_grad_norm=1.0)
        >>> per_sample_norms(g)
        tensor([1.0000, 0.5000])
    """
    if math.isnan(_number("max_grad_norm", max_grad_norm)) or max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm (the clipping norm C) must be > 0, got {max_grad_norm}")
    factor = (max_grad_norm / (per_sample_norms(grads) + CLIP_STABILITY)).clamp(max=1.0)
    return {k: g * factor.to(g.dtype).view(-1, *([1] * (g.ndim - 1))) for k, g in grads.items()}


def add_noise(summed: Mapping[str, torch.Tensor], *, noise_multiplier: float, max_grad_norm: float,
              generator: torch.Generator | None = None) -> Grads:
    """Add Gaussian noise ``N(0, σ² C² I)`` to a sum of clipped gradients.

    The noise of each parameter is drawn in the order of ``summed`` with
    ``torch.normal(0, σC, size, generator=generator)``, exactly as Opacus's ``DPOptimizer``
    draws it, so that the same generator state gives the same noise in both implementations.

    Args:
        summed: ``{name: tensor}``, the sum of the clipped per-sample gradients.
        noise_multiplier: σ ≥ 0 (0: no noise).
        max_grad_norm: C, the clipping norm (the sensitivity of the sum).
        generator: random generator on the tensors' device (``None``: torch's global one).

    Example:
        >>> out = add_noise({"w": torch.zeros(100_000)}, noise_multiplier=2.0, max_grad_norm=0.5,
        ...                 generator=torch.Generator().manual_seed(0))
        >>> round(float(out["w"].std()), 2)
        1.0
    """
    _check_privacy(noise_multiplier, max_grad_norm)
    std = 0.0 if noise_multiplier == 0 else float(noise_multiplier) * float(max_grad_norm)
    out: Grads = {}
    for k, s in summed.items():
        if std == 0:
            out[k] = s.clone()
        else:
            out[k] = s + torch.normal(mean=0.0, std=std, size=s.shape, device=s.device, generator=generator,
                                      dtype=s.dtype)
    return out


def dpsgd_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, noise_multiplier: float,
                   max_grad_norm: float, expected_batch_size: float, generator: torch.Generator | None = None,
                   loss_fn: LossFn = F.cross_entropy) -> tuple[Grads, torch.Tensor]:
    """The privatised gradient of one DP-SGD step: clip, sum, add noise, divide by ``B_exp``.

    Dividing by the *expected* batch size ``q N`` (not the realised ``|B|``) keeps the sensitivity
    of the update at ``C / (q N)``: the realised size depends on whether the target example was
    sampled and would leak it. An empty batch gives pure noise.

    Args:
        model: the network (not modified).
        x: the sampled batch ``[B, ...]`` (may be empty).
        y: its targets ``[B]``.
        noise_multiplier: σ.
        max_grad_norm: C (``inf`` with σ = 0 gives the plain mean-loss gradient when ``B = B_exp``).
        expected_batch_size: ``q N``.
        generator: noise generator on the model's device.
        loss_fn: loss of one example, as in :func:`per_sample_grads`.

    Returns:
        ``({name: gradient}, per-example losses [B])``.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> g, losses = dpsgd_gradient(net, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]), noise_multiplier=0.0,
        ...                            max_grad_norm=1.0, expected_batch_size=4)
        >>> bool(per_sample_norms({k: v[None] for k, v in g.items()}) <= 1.0), tuple(losses.shape)
        (True, (4,))
    """
    _check_privacy(noise_multiplier, max_grad_norm)
    if not expected_batch_size > 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    grads, losses = per_sample_grads(model, x, y, loss_fn=loss_fn, return_losses=True)
    clipped = clip_grads(grads, max_grad_norm=max_grad_norm)
    summed = {k: g.sum(0) for k, g in clipped.items()}
    noisy = add_noise(summed, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, generator=generator)
    return {k: v / expected_batch_size for k, v in noisy.items()}, losses


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------

class PoissonSampler(torch.utils.data.Sampler):
    """Poisson-sampled batches of indices: each example joins each batch independently with prob. ``q``.

    This is the sampling that the privacy amplification of the sampled Gaussian mechanism
    assumes (Mironov et al. 2019), as Opacus's ``UniformWithReplacementSampler`` draws it
    (``torch.rand(N) < q``). It is a batch sampler: it yields lists of indices, so it serves both
    :func:`dpsgd_fit` (which indexes tensors) and a ``torch.utils.data.DataLoader``
    (``batch_sampler=``) given to Opacus by :func:`dpsgd_fit_opacus`.

    Args:
        num_examples: N.
        sample_rate: q in (0, 1].
        steps: number of batches per pass over the sampler.
        generator: a seeded CPU ``torch.Generator``.

    Example:
        >>> s = PoissonSampler(1000, sample_rate=0.1, steps=3, generator=torch.Generator().manual_seed(0))
        >>> [len(b) for b in s], len(s)
        ([100, 102, 105], 3)
    """

    def __init__(self, num_examples: int, *, sample_rate: float, steps: int,
                 generator: torch.Generator | None = None) -> None:
        if int(num_examples) < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")
        _check_sample_rate(sample_rate)
        if int(steps) < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.num_examples = int(num_examples)
        self.sample_rate = float(sample_rate)
        self.steps = int(steps)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = torch.rand(self.num_examples, generator=self.generator) < self.sample_rate
            yield mask.nonzero().flatten().tolist()


def dpsgd_steps(*, epochs: float, sample_rate: float) -> int:
    """Steps of ``epochs`` expected passes over the data: ``floor(epochs / q)`` (at least 1).

    Example:
        >>> dpsgd_steps(epochs=60, sample_rate=256 / 60000)
        14062
    """
    _check_sample_rate(sample_rate)
    if not epochs > 0 or not math.isfinite(epochs):
        raise ValueError(f"epochs must be a positive finite number, got {epochs}")
    return max(1, int(math.floor(epochs / sample_rate + 1e-9)))


def _seeds(seed: int) -> tuple[int, int]:
    """Independent seeds of the batch sampler and of the noise, derived from one seed."""
    a, b = np.random.SeedSequence(int(seed)).spawn(2)
    return int(a.generate_state(1)[0]), int(b.generate_state(1)[0])


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

@dataclass
class DPSGDRun:
    """The outcome of :func:`dpsgd_fit` or :func:`dpsgd_fit_opacus`.

    Attributes:
        model: the trained network (the object passed in), in eval mode.
        noise_multiplier: σ.
        max_grad_norm: C.
        sample_rate: q.
        steps: number of DP-SGD steps taken.
        batch_sizes: the realised size of every Poisson-sampled batch.
        losses: the mean training loss of every step's batch (NaN for an empty batch).
        implementation: ``"mu_lib"`` or ``"opacus"``.
        accountant: Opacus's accountant of the run (``None`` for the from-scratch trainer).
    """

    model: nn.Module
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    batch_sizes: np.ndarray
    losses: np.ndarray
    implementation: str
    accountant: Any = None

    def epsilon(self, delta: float, *, accountant: str = "rdp") -> float:
        """ε of the run at ``delta`` (see :func:`dpsgd_epsilon`)."""
        return dpsgd_epsilon(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=self.steps,
                             delta=delta, accountant=accountant)


def _prepare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, noise_multiplier: float, max_grad_norm: float,
             sample_rate: float, epochs: float | None, steps: int | None, lr: float, momentum: float,
             weight_decay: float) -> int:
    check_dp_model(model)
    check_xy(x, y)
    _check_privacy(noise_multiplier, max_grad_norm)
    _check_sample_rate(sample_rate)
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs and steps, got epochs={epochs}, steps={steps}")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if not math.isfinite(_number("lr", lr)) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return int(steps) if steps is not None else dpsgd_steps(epochs=epochs, sample_rate=sample_rate)


def _start(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, sample_rate: float, seed: int,
           device: Any, lr: float, momentum: float, weight_decay: float
           ) -> tuple[torch.device, torch.Tensor, torch.Tensor, PoissonSampler, torch.Generator, torch.optim.SGD]:
    """What both trainers share: the device, the data on it, the seeded batch sampler and noise
    generator, and the plain SGD optimiser."""
    dev = runtime.resolve_device(device)
    model.to(dev).train()
    xd, yd = x.to(dev), y.to(dev)
    sample_seed, noise_seed = _seeds(seed)
    sampler = PoissonSampler(xd.shape[0], sample_rate=sample_rate, steps=steps,
                             generator=torch.Generator().manual_seed(sample_seed))
    noise_gen = torch.Generator(device=dev).manual_seed(noise_seed)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    return dev, xd, yd, sampler, noise_gen, opt


def _check_losses(losses: torch.Tensor, sizes: list[int], upto: int, lr: float) -> None:
    seg = losses[:upto].cpu()
    nonempty = torch.tensor(sizes[:upto]) > 0
    bad = (~torch.isfinite(seg)) & nonempty
    if bad.any():
        first = int(bad.nonzero()[0])
        raise FloatingPointError(f"DP-SGD training loss became {float(seg[first])} at step {first + 1}; "
                                 f"try a smaller learning rate than {lr} or a smaller clipping norm")


def dpsgd_fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, noise_multiplier: float,
              max_grad_norm: float, sample_rate: float, epochs: float | None = None, steps: int | None = None,
              lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0, seed: int = 0,
              device: str | torch.device | None = None, loss_fn: LossFn = F.cross_entropy,
              progress: bool | None = None) -> DPSGDRun:
    """Train ``model`` in place with DP-SGD written from scratch (:func:`dpsgd_gradient` each step).

    Batches are Poisson-sampled (:class:`PoissonSampler`) with rate ``q``; the privatised gradient
    is written into ``.grad`` and ``torch.optim.SGD`` takes the step (momentum and weight decay
    act on the privatised gradient, i.e. post-processing, as with Opacus). The batch sampler and
    the noise use independent generators derived from ``seed``; :func:`dpsgd_fit_opacus` with the
    same arguments draws the same batches and the same noise.

    Args:
        model: a network without batch norm; moved to ``device``.
        x: training inputs ``[N, ...]``.
        y: integer labels ``[N]``.
        noise_multiplier: σ ≥ 0.
        max_grad_norm: the clipping norm C > 0 (``inf`` only with σ = 0).
        sample_rate: q in (0, 1]; the expected batch size is ``q N``.
        epochs: expected passes over the data (``steps = floor(epochs / q)``), or
        steps: the number of steps.
        lr: learning rate (constant).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        seed: seed of the batch sampler and of the noise.
        device: where to train.
        loss_fn: loss of one example (default cross-entropy).
        progress: show a progress bar.

    Returns:
        A :class:`DPSGDRun`.

    Raises:
        ValueError: for a model with batch norm or bad hyperparameters.
        FloatingPointError: if a batch's loss becomes NaN or infinite.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> run = dpsgd_fit(net, torch.randn(32, 1, 2, 2), torch.randint(0, 2, (32,)), noise_multiplier=1.0,
        ...                 max_grad_norm=1.0, sample_rate=0.5, steps=3, seed=0)
        >>> run.steps, len(run.batch_sizes), run.implementation
        (3, 3, 'mu_lib')
    """
    total = _prepare(model, x, y, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                     sample_rate=sample_rate, epochs=epochs, steps=steps, lr=lr, momentum=momentum,
                     weight_decay=weight_decay)
    dev, xd, yd, sampler, noise_gen, opt = _start(model, x, y, steps=total, sample_rate=sample_rate, seed=seed,
                                                  device=device, lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = xd.shape[0]
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    losses = torch.full((total,), float("nan"), device=dev)
    sizes: list[int] = []
    check_every = max(1, round(1 / sample_rate))
    for t, batch in enumerate(runtime.progress(sampler, enabled=progress, desc="DP-SGD", total=total, leave=False)):
        idx = torch.tensor(batch, dtype=torch.long, device=dev)
        grad, batch_losses = dpsgd_gradient(model, xd[idx], yd[idx], noise_multiplier=noise_multiplier,
                                            max_grad_norm=max_grad_norm, expected_batch_size=sample_rate * n,
                                            generator=noise_gen, loss_fn=loss_fn)
        for k, p in named:
            p.grad = grad[k]
        opt.step()
        sizes.append(len(batch))
        if batch:
            losses[t] = batch_losses.detach().mean()
        if (t + 1) % check_every == 0 or t + 1 == total:
            _check_losses(losses, sizes, t + 1, lr)
    opt.zero_grad(set_to_none=True)
    model.eval()
    return DPSGDRun(model=model, noise_multiplier=float(noise_multiplier), max_grad_norm=float(max_grad_norm),
                    sample_rate=float(sample_rate), steps=total, batch_sizes=np.asarray(sizes),
                    losses=losses.cpu().numpy().astype(np.float64), implementation="mu_lib")


class _IndexedTensors(torch.utils.data.Dataset):
    """A map-style dataset over in-memory tensors that fetches a whole batch of indices at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(indices, dtype=torch.long, device=self.x.device)
        return self.x[idx], self.y[idx]


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def dpsgd_fit_opacus(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, noise_multiplier: float,
                     max_grad_norm: float, sample_rate: float, epochs: float | None = None,
                     steps: int | None = None, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0,
                     seed: int = 0, device: str | torch.device | None = None,
                     loss_fn: LossFn = F.cross_entropy, progress: bool | None = None) -> DPSGDRun:
    """Train ``model`` in place with Opacus (``PrivacyEngine(accountant="rdp").make_private``).

    Same arguments, batches and noise stream as :func:`dpsgd_fit`: the data loader handed to
    Opacus draws its batches with the same :class:`PoissonSampler` (so ``make_private`` gets
    ``poisson_sampling=False``: the sampling is already Poisson), and the noise generator is
    seeded as in :func:`dpsgd_fit`. Per-sample gradients come from Opacus's hooks
    (``grad_sample_mode="hooks"``), not from ``torch.func``; the results agree to float
    rounding.

    Two settings that ``make_private`` infers from the data loader's length are set explicitly,
    because our sampler's length is the total number of steps, not the steps of one epoch:
    ``make_private`` would take ``q = 1 / len(loader)`` and ``B_exp = int(N q)``. We re-attach the
    accountant's step hook with the true ``q`` and set the optimizer's expected batch size to
    ``q N`` (Opacus floors it to an integer; we do not, in both trainers).

    ``loss_fn`` must average over the batch (``reduction="mean"``), as Opacus's
    ``loss_reduction="mean"`` assumes.

    Returns:
        A :class:`DPSGDRun` whose ``accountant`` is Opacus's RDP accountant of the run and whose
        ``model`` is the original module (Opacus's hooks removed).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> run = dpsgd_fit_opacus(net, torch.randn(32, 1, 2, 2), torch.randint(0, 2, (32,)), noise_multiplier=1.0,
        ...                        max_grad_norm=1.0, sample_rate=0.5, steps=3, seed=0)
        >>> abs(run.accountant.get_epsilon(1e-5) - run.epsilon(1e-5)) < 1e-9
        True
    """
    from opacus import PrivacyEngine

    total = _prepare(model, x, y, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                     sample_rate=sample_rate, epochs=epochs, steps=steps, lr=lr, momentum=momentum,
                     weight_decay=weight_decay)
    if math.isinf(max_grad_norm):
        raise ValueError("Opacus cannot run without clipping (max_grad_norm=inf gives noise std 0 * inf = nan); "
                         "use a large finite max_grad_norm instead")
    dev, xd, yd, sampler, noise_gen, opt = _start(model, x, y, steps=total, sample_rate=sample_rate, seed=seed,
                                                  device=device, lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = xd.shape[0]
    loader = torch.utils.data.DataLoader(_IndexedTensors(xd, yd), batch_sampler=sampler, collate_fn=_as_batch)
    with warnings.catch_warnings():
        # "Secure RNG turned off" and hook warnings: expected in a teaching setting, noise for the reader.
        warnings.simplefilter("ignore", UserWarning)
        engine = PrivacyEngine(accountant="rdp")
        private, dp_opt, dp_loader = engine.make_private(
            module=model, optimizer=opt, data_loader=loader, noise_multiplier=float(noise_multiplier),
            max_grad_norm=float(max_grad_norm), poisson_sampling=False, noise_generator=noise_gen,
            grad_sample_mode="hooks", clipping="flat", loss_reduction="mean")
    dp_opt.expected_batch_size = sample_rate * n
    dp_opt.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    losses = torch.full((total,), float("nan"), device=dev)
    sizes: list[int] = []
    check_every = max(1, round(1 / sample_rate))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for t, (xb, yb) in enumerate(runtime.progress(dp_loader, enabled=progress, desc="DP-SGD (Opacus)",
                                                          total=total, leave=False)):
                dp_opt.zero_grad(set_to_none=True)
                loss = loss_fn(private(xb), yb)
                loss.backward()
                dp_opt.step()
                sizes.append(int(yb.shape[0]))
                if yb.shape[0]:
                    losses[t] = loss.detach()
                if (t + 1) % check_every == 0 or t + 1 == total:
                    _check_losses(losses, sizes, t + 1, lr)
    finally:
        dp_opt.zero_grad(set_to_none=True)
        model = private.to_standard_module()
    model.eval()
    return DPSGDRun(model=model, noise_multiplier=float(noise_multiplier), max_grad_norm=float(max_grad_norm),
                    sample_rate=float(sample_rate), steps=total, batch_sizes=np.asarray(sizes),
                    losses=losses.cpu().numpy().astype(np.float64), implementation="opacus",
                    accountant=engine.accountant)


# --------------------------------------------------------------------------------------------
# accounting
# --------------------------------------------------------------------------------------------

def dpsgd_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp") -> float:
    """ε of ``steps`` DP-SGD steps (sampled Gaussian mechanism) at ``delta``, by an Opacus accountant.

    ``"rdp"`` composes Rényi DP (Mironov 2017) of the sampled Gaussian mechanism (Mironov et al.
    2019) and converts it to (ε, δ) with Opacus's default orders and conversion (Balle et al.
    2020); ``"prv"`` composes privacy random variables numerically and returns the upper end of
    its estimate; ``"gdp"`` is the Gaussian-DP central-limit approximation, which Opacus calls
    experimental: it can underestimate ε (few steps, large ``q``) and is not a guarantee. σ = 0
    gives ``inf``.

    Args:
        noise_multiplier: σ ≥ 0.
        sample_rate: q in (0, 1].
        steps: number of steps T ≥ 0.
        delta: δ in (0, 1).
        accountant: one of :data:`ACCOUNTANTS`.

    Returns:
        ε ≥ 0.

    Example:
        >>> round(dpsgd_epsilon(noise_multiplier=1.1, sample_rate=256 / 60000, steps=14062, delta=1e-5), 3)
        2.597
    """
    _check_accountant(accountant)
    _check_delta(delta)
    _check_sample_rate(sample_rate)
    _check_noise_multiplier(noise_multiplier)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps}")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    from opacus.accountants import create_accountant

    with warnings.catch_warnings():
        # GDP warns that it is experimental (documented above); RDP that the optimal order lies at
        # the end of its default range (the value is then a valid but looser upper bound).
        warnings.simplefilter("ignore", UserWarning)
        acc = create_accountant(accountant)
        acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
        return float(acc.get_epsilon(delta=delta))


def dpsgd_noise_multiplier(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                           accountant: str = "rdp", epsilon_tolerance: float = 0.01) -> float:
    """The smallest σ (to ``epsilon_tolerance``) whose ``steps`` steps give at most ``target_epsilon``.

    Calls Opacus's ``get_noise_multiplier`` (doubling, then bisection), so that
    ``dpsgd_epsilon(noise_multiplier=σ, ...) <= target_epsilon``.

    Example:
        >>> sigma = dpsgd_noise_multiplier(target_epsilon=2.0, delta=1e-5, sample_rate=0.01, steps=1000)
        >>> dpsgd_epsilon(noise_multiplier=sigma, sample_rate=0.01, steps=1000, delta=1e-5) <= 2.0
        True
    """
    _check_accountant(accountant)
    _check_delta(delta)
    _check_sample_rate(sample_rate)
    if not math.isfinite(_number("target_epsilon", target_epsilon)) or target_epsilon <= 0:
        raise ValueError(f"target_epsilon must be a positive finite number, got {target_epsilon}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=int(steps), accountant=accountant,
                                          epsilon_tolerance=epsilon_tolerance))
