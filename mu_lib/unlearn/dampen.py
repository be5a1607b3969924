"""Parameter dampening: Selective Synaptic Dampening (SSD) and Fisher forgetting.

Neither method takes a gradient step. Both estimate how much each parameter matters to some data
with a diagonal Fisher information, and then edit the parameters directly:

* ``ssd`` (Foster et al. 2024) shrinks the parameters that matter far more to the forget set than
  to the whole training set: where ``I_f > alpha I_D`` it multiplies the parameter by
  ``beta = min(lambda I_D / I_f, 1)``, so no parameter ever grows.
* ``fisher`` (Golatkar et al. 2020) adds Gaussian noise whose variance is inversely proportional
  to the Fisher information of the *retain* set: parameters the retain set does not pin down are
  scrambled, which destroys whatever information about the forget set they held.

Example:
    >>> from mu_lib import data, models
    >>> s = data.make_splits("digits", val_size=50, test_size=300, seed=0)
    >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    >>> imp = importances(net, s.loader("forget", batch_size=128))
    >>> sorted(imp) == sorted(n for n, _ in net.named_parameters()), all(bool((v >= 0).all()) for v in imp.values())
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import cost
from mu_lib.data import TensorLoader
from mu_lib.unlearn import _layers, _loops
from mu_lib.unlearn.base import RestrictedSplits, UnlearnConfig, register

__all__ = ["SSDConfig", "FisherConfig", "importances", "dampen", "retain_fisher", "fisher_variances",
           "ssd", "fisher"]


def importances(model: nn.Module, loader: TensorLoader) -> dict[str, torch.Tensor]:
    """SSD's importance: the mean over batches of the squared gradient of the batch-mean CE.

    Computed in eval mode (as SSD's ``ssd_tuning``); the model is not modified.

    Returns:
        ``{parameter name: tensor of the parameter's shape}``.
    """
    was_training = model.training
    model.eval()
    named = list(model.named_parameters())
    out = [torch.zeros_like(p) for _, p in named]
    batches = 0
    for xb, yb in loader:
        grads = torch.autograd.grad(F.cross_entropy(model(xb), yb), [p for _, p in named], allow_unused=True)
        for acc, g in zip(out, grads):
            if g is not None:
                acc.add_(g.pow(2))
        batches += 1
    model.train(was_training)
    if batches == 0:
        raise ValueError("the loader is empty: no importance can be estimated")
    return {n: acc / batches for (n, _), acc in zip(named, out)}


@torch.no_grad()
def dampen(model: nn.Module, full: dict[str, torch.Tensor], forget: dict[str, torch.Tensor], *,
           alpha: float, lam: float) -> nn.Module:
    """SSD's edit, in place: where ``forget > alpha * full`` multiply by ``min(lam * full / forget, 1)``.

    Example:
        >>> net = nn.Linear(2, 1, bias=False)
        >>> _ = net.weight.data.copy_(torch.tensor([[1.0, 1.0]]))
        >>> _ = dampen(net, {"weight": torch.tensor([[1.0, 1.0]])}, {"weight": torch.tensor([[20.0, 5.0]])},
        ...            alpha=10.0, lam=1.0)
        >>> net.weight.tolist()
        [[0.05000000074505806, 1.0]]
    """
    for n, p in model.named_parameters():
        selected = forget[n] > alpha * full[n]
        beta = torch.clamp(lam * full[n] / torch.where(selected, forget[n], torch.ones_like(forget[n])), max=1.0)
        p.mul_(torch.where(selected, beta, torch.ones_like(beta)))
    return model


@dataclass(frozen=True)
class SSDConfig(UnlearnConfig):
    """SSD's ResNet-18 setting for every task: ``alpha`` (selection weighting) 10, ``lam``
    (dampening constant) 1, batch 128 for both importances.
    """

    epoch_fields = ()
    alpha: float = 10.0
    lam: float = 1.0
    batch_size: int = 128

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("batch_size",), positive=("alpha", "lam", "batch_size"))


@register("ssd", config=SSDConfig, family="dampening", uses=("retain", "forget"),
          summary="shrink the parameters far more important to the forget set than to the training set",
          reference="Foster et al. 2024 (SSD)")
def ssd(model: nn.Module, splits: RestrictedSplits, cfg: SSDConfig, *, device, seed: int) -> nn.Module:
    """SSD: importances on the forget set and on the full training set (retain and forget, in one
    unshuffled pass as SSD's ``full_train_dl``), then :func:`dampen`."""
    forget_imp = importances(model, splits.loader("forget", batch_size=cfg.batch_size, device=device))
    full_imp = importances(model, splits.loader("train", batch_size=cfg.batch_size, device=device))
    return dampen(model, full_imp, forget_imp, alpha=cfg.alpha, lam=cfg.lam)


def retain_fisher(model: nn.Module, loader: TensorLoader) -> dict[str, torch.Tensor]:
    """Golatkar's diagonal Fisher: the mean over examples of ``sum_y p(y|x) (grad CE(x, y))^2``.

    The gradients are per example and per class (``torch.func.vmap`` over ``grad``, every
    example of a batch paired with every class in one call), with the model in eval mode: the
    same quantity as the batch-size-1 loop of Golatkar's ``hessian`` (the batch-level shortcut of
    Unlearn-Sparse's ``fisher_new`` is not used). One call holds ``batch × classes`` gradients of
    the size of the model: choose the loader's batch size for the memory at hand.

    Returns:
        ``{parameter name: Fisher diagonal of the parameter's shape}``.
    """
    from torch.func import functional_call, grad, vmap

    was_training = model.training
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (x.unsqueeze(0),)), y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for xb, _ in loader:
        with torch.no_grad():
            probs = F.softmax(functional_call(model, (params, buffers), (xb,)), dim=1)
        b, k = probs.shape
        labels = torch.arange(k, device=xb.device).repeat(b)  # example i, class c at row i * k + c
        g = per_example(params, xb.repeat_interleave(k, dim=0), labels)
        cost.record(b * k, backward=True)  # vmap hides these per-example passes from the hooks
        w = probs.reshape(-1)
        for n in fisher:
            fisher[n].add_(torch.tensordot(w, g[n].pow(2), dims=1))
        count += b
    model.train(was_training)
    if count == 0:
        raise ValueError("the loader is empty: no Fisher information can be estimated")
    return {n: f / count for n, f in fisher.items()}


def fisher_variances(model: nn.Module, fisher: dict[str, torch.Tensor], *, alpha: float,
                     forget_classes: list[int] = ()) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Golatkar's ``get_mean_var``: the mean and variance of the noise distribution per parameter.

    * ``var = alpha * min(1 / (F + 1e-8), 1e3)`` (``1e2`` for the classifier, the model's last
      block in :func:`mu_lib.unlearn._layers.blocks`);
    * for tensors with more than one dimension, ``var`` is averaged over the input dimension;
    * ``var`` is multiplied by 10 for the classifier and for one-dimensional tensors (biases,
      batch-norm);
    * for every class in ``forget_classes`` (classes with no retain example left), the classifier's
      row and bias of that class get mean 0 and variance ``1e-4`` (times 10).

    Returns:
        ``{parameter name: (mean, variance)}``.
    """
    classifier = {n for n, _ in _layers.block_parameters(model, _layers.blocks(model)[-1])}
    out = {}
    for n, p in model.named_parameters():
        head = n in classifier
        var = torch.clamp(1.0 / (fisher[n] + 1e-8), max=1e2 if head else 1e3) * alpha
        if p.ndim > 1:
            var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
        mu = p.detach().clone()
        if head and len(forget_classes):
            rows = torch.as_tensor(list(forget_classes), device=p.device)
            mu[rows] = 0.0
            var[rows] = 1e-4
        if head or p.ndim == 1:
            var = var * 10
        out[n] = (mu, var)
    return out


@dataclass(frozen=True)
class FisherConfig(UnlearnConfig):
    """Golatkar et al.'s Fisher forgetting with their ``alpha = 1e-6`` (swept over 1e-8 to 1e-5).

    Deep Unlearn searches ``alpha`` in [0, 1], which makes the noise destroy the model (its rerun's
    FF collapses to chance); the Fisher is computed per example here, in batches of ``batch_size``.

    Attributes:
        alpha: scale of the noise variance.
        batch_size: examples whose per-example, per-class gradients are computed at once
            (``batch_size x classes`` gradients of the model's size in memory).
        num_examples: estimate the Fisher on a random subset of this many retain examples
            (seeded); ``None`` uses the whole retain set, as Golatkar et al. did on their small
            datasets. The Fisher costs one backward pass per example *and class*, so on CIFAR-10
            a subset of a few thousand keeps it affordable.
    """

    epoch_fields = ()
    alpha: float = 1e-6
    batch_size: int = 16
    num_examples: int | None = None

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("batch_size",), positive=("alpha", "batch_size"))
        if self.num_examples is not None:
            _loops.check_config(self, integer=("num_examples",), positive=("num_examples",))


@register("fisher", config=FisherConfig, family="dampening", uses=("retain", "forget"),
          summary="add noise shaped by the inverse Fisher information of the retain set",
          reference="Golatkar et al. 2020 (Fisher forgetting)")
def fisher(model: nn.Module, splits: RestrictedSplits, cfg: FisherConfig, *, device, seed: int) -> nn.Module:
    """Fisher forgetting: ``theta = mu + sqrt(var) * N(0, I)`` with :func:`fisher_variances`.

    The forget set is read only for its labels: classes that no longer occur in the retain set
    are forgotten classes, whose classifier rows are zeroed (Golatkar's class-forgetting step).
    """
    xr, yr = splits.xy("retain")
    _, yf = splits.xy("forget")
    gone = sorted(set(torch.unique(yf).tolist()) - set(torch.unique(yr).tolist()))
    gen = torch.Generator().manual_seed(int(seed))
    if cfg.num_examples is not None and cfg.num_examples < xr.shape[0]:
        pick = torch.randperm(xr.shape[0], generator=gen)[:cfg.num_examples]
        xr, yr = xr[pick], yr[pick]
    fim = retain_fisher(model, TensorLoader(xr, yr, batch_size=cfg.batch_size, device=device))
    with torch.no_grad():
        dist = fisher_variances(model, fim, alpha=cfg.alpha, forget_classes=gone)
        for n, p in model.named_parameters():
            mu, var = dist[n]
            noise = torch.randn(p.shape, generator=gen).to(p.device)
            p.copy_(mu + var.sqrt() * noise)
    return model
