"""Boundary unlearning (Chen et al., CVPR 2023): boundary shrink and boundary expanding.

Both methods read the forget set only and move the *decision boundary* rather than the weights
that store the examples:

* ``boundary_shrink`` (BS) relabels each forget example with the *frozen original* model's
  prediction on its FGSM adversarial example (the nearest neighbouring class) and fine-tunes on
  the forget set towards those labels, shrinking the region of the original labels;
* ``boundary_expanding`` (BE) widens the classifier by one *shadow* class, trains the forget set
  towards it, then prunes the shadow output away: the forget examples are left wherever the shadow
  class pulled them, outside the regions of the real classes.

Defaults follow SalUn's framework, which reruns both methods under a common protocol (SGD with
momentum 0.9 and weight decay 5e-4, batch 256, 10 epochs, train mode), with the learning rate of
the authors' release, 1e-5 (``lr=0.00001`` in both functions of ``boundary_unlearning.py``; SalUn's
reruns use 1e-6 to 4e-5). Budget rule: an epoch passes over the forget set only (weight 0.1); the
rate is constant.

Example:
    >>> from mu_lib import data, models, unlearn
    >>> s = data.make_splits("digits", val_size=50, test_size=300, seed=0)
    >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    >>> out = unlearn.get("boundary_expanding", epochs=1)(net, s, device="cpu", seed=0)
    >>> out.fc.out_features   # the shadow class is pruned away again
    10
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _layers, _loops
from mu_lib.unlearn._framework import SalUnFrameworkConfig
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, register

__all__ = ["BoundaryShrinkConfig", "BoundaryExpandingConfig", "fgsm", "boundary_labels", "widen_classifier",
           "prune_shadow_class", "boundary_shrink", "boundary_expanding"]


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, mean: tuple[float, ...],
         std: tuple[float, ...]) -> torch.Tensor:
    """One FGSM step of size ``eps`` in [0, 1] pixel units, on standardised images.

    The images are mapped back to pixels, moved by ``eps * sign(grad of CE)``, clipped to [0, 1],
    rounded to 8-bit levels (as SalUn's ``FGSM_perturb``) and standardised again. ``model`` is used
    as it is (put it in eval mode first).

    Returns:
        The adversarial images, standardised, detached.
    """
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    pixels = (x * s + m).detach().requires_grad_(True)
    loss = F.cross_entropy(model((pixels - m) / s), y)
    (grad,) = torch.autograd.grad(loss, pixels)
    adv = torch.round(torch.clamp(pixels.detach() + eps * grad.sign(), 0.0, 1.0) * 255) / 255
    return ((adv - m) / s).detach()


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def boundary_labels(frozen: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, mean: tuple[float, ...],
                    std: tuple[float, ...]) -> torch.Tensor:
    """Boundary shrink's labels: ``frozen``'s predictions on the FGSM examples of ``(x, y)``.

    Example:
        >>> from mu_lib import data, models
        >>> ds = data.load_dataset("digits")
        >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0).eval()
        >>> boundary_labels(net, ds.x[:4], ds.y[:4], eps=0.1, mean=ds.mean, std=ds.std).shape
        torch.Size([4])
    """
    return _predict(frozen, fgsm(frozen, x, y, eps=eps, mean=mean, std=std))


@dataclass(frozen=True)
class _BoundaryConfig(SalUnFrameworkConfig):
    """What both boundary methods share in SalUn's framework: 10 epochs on the forget set at
    learning rate 1e-5 (the authors' ``lr=0.00001``), the framework's SGD and augmentation switch."""

    epoch_weights = (NOMINAL_FRACTIONS["forget"],)
    lr: float = 1e-5


@dataclass(frozen=True)
class BoundaryShrinkConfig(_BoundaryConfig):
    """Boundary shrink in SalUn's framework: FGSM bound ``eps`` 0.1 in pixel units (``bound = 0.1
    # hard coding in the paper`` in SalUn's ``boundary_sh.py``, ``bound=0.1`` in the authors'
    ``boundary_shrink``), learning rate 1e-5 (the authors' ``lr=0.00001``), 10 epochs (the
    authors' ``poison_epoch=10``), and the framework's SGD (:class:`_BoundaryConfig`).

    Attributes:
        eps: FGSM step in [0, 1] pixel units.
    """

    eps: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, positive=("eps",))


@register("boundary_shrink", config=BoundaryShrinkConfig, family="boundary", uses=("forget",),
          summary="fine-tune the forget set towards the classes its FGSM neighbours fall into",
          reference="Chen et al. 2023 (boundary unlearning), as in SalUn's code")
def boundary_shrink(model: nn.Module, splits: RestrictedSplits, cfg: BoundaryShrinkConfig, *, device,
                    seed: int) -> nn.Module:
    """Each forget batch is relabelled by the frozen original model's prediction on its FGSM
    example; the model is trained (train mode) with cross-entropy towards those labels."""
    frozen = _loops.frozen_copy(model)
    mean, std = splits.data.mean, splits.data.std
    loader = splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed, augment=cfg.augment,
                           device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        target = boundary_labels(frozen, xb, yb, eps=cfg.eps, mean=mean, std=std)
        return F.cross_entropy(model(xb), target)

    return _loops.run_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, loss_fn=loss_fn, method="boundary_shrink")


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def widen_classifier(model: nn.Module, *, generator: torch.Generator) -> tuple[str, nn.Linear]:
    """Replace the classifier (the last ``nn.Linear``) by one with an extra *shadow* output, in place.

    The first ``K`` rows (and biases) are the classifier's; the shadow row is drawn with PyTorch's
    default initialisation of a fresh layer, seeded from ``generator`` (SalUn's ``expand_model``).

    Returns:
        The classifier's name and the *original* classifier (for :func:`prune_shadow_class`).
    """
    name, fc = _layers.classifier(model)
    wide = nn.Linear(fc.in_features, fc.out_features + 1, bias=fc.bias is not None).to(
        device=fc.weight.device, dtype=fc.weight.dtype)
    _layers.reset_layer_(wide, generator=generator)
    with torch.no_grad():
        wide.weight[:-1] = fc.weight
        if fc.bias is not None:
            wide.bias[:-1] = fc.bias
    _set_submodule(model, name, wide)
    return name, fc


def prune_shadow_class(model: nn.Module, name: str, original: nn.Linear) -> nn.Module:
    """Put back a classifier of the original size holding the widened one's first ``K`` rows, in place.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 2))
        >>> name, fc = widen_classifier(net, generator=torch.Generator().manual_seed(0))
        >>> net[0].out_features
        3
        >>> prune_shadow_class(net, name, fc)[0].out_features
        2
    """
    wide = model.get_submodule(name)
    with torch.no_grad():
        original.weight.copy_(wide.weight[:-1])
        if original.bias is not None:
            original.bias.copy_(wide.bias[:-1])
    _set_submodule(model, name, original)
    return model


@dataclass(frozen=True)
class BoundaryExpandingConfig(_BoundaryConfig):
    """Boundary expanding in SalUn's framework: 10 epochs (the authors' ``finetune_epochs = 10``),
    learning rate 1e-5 (the authors' ``lr=0.00001``), and the framework's SGD
    (:class:`_BoundaryConfig`)."""


@register("boundary_expanding", config=BoundaryExpandingConfig, family="boundary", uses=("forget",),
          summary="train the forget set towards an extra shadow class, then prune the shadow output",
          reference="Chen et al. 2023 (boundary unlearning), as in SalUn's code")
def boundary_expanding(model: nn.Module, splits: RestrictedSplits, cfg: BoundaryExpandingConfig, *, device,
                       seed: int) -> nn.Module:
    """:func:`widen_classifier`, then cross-entropy towards the shadow class ``K`` on the forget set
    (train mode, every parameter trainable), then :func:`prune_shadow_class`.

    Deviation: the authors' code re-initialises the whole widened layer (``w_init``) before copying
    the original rows; as in SalUn's port, only the shadow row is new here. The authors' code
    returns the pruned model, SalUn's port the widened one; the pruned one, of the original
    architecture, is returned here.
    """
    name, fc = widen_classifier(model, generator=torch.Generator().manual_seed(int(seed)))
    shadow = fc.out_features
    loader = splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed, augment=cfg.augment,
                           device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    try:
        _loops.run_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, method="boundary_expanding",
                          loss_fn=lambda xb, yb: F.cross_entropy(model(xb), torch.full_like(yb, shadow)))
    finally:
        prune_shadow_class(model, name, fc)
    return model
