"""Winners #5 to #8 of the NeurIPS 2023 Machine Unlearning Challenge: ``ct``, ``kde``, ``rni``,
``reinit_mse`` (family ``"competition"``).

The overview of all eight recipes, the architecture vocabulary (first conv, classifier, weight
layers, projection shortcuts) and the shared building blocks are in
:mod:`mu_lib.unlearn.winners`.

Example:
    >>> from mu_lib import unlearn
    >>> unlearn.info("reinit_mse").uses
    frozenset({'retain'})
    >>> unlearn.get("reinit_mse", epoch_budget=3).config.cycle_epochs
    (1, 1, 1)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import RestrictedSplits, UnlearnConfig, register
from mu_lib.unlearn.winners import (NORM_TYPES, _loss_epochs, _randn, classifier, conv_layers,
                                    first_conv, is_projection_shortcut, kl_distillation, reset_layer_, weight_layers)

__all__ = ["CTConfig", "KDEConfig", "RNIConfig", "ReinitMSEConfig", "transpose_conv_kernels_", "noise_round_",
           "reinit_candidates", "reinit_random_layers_"]


# --------------------------------------------------------------------------------------------
# Winner #5: toshi_k (CT)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CTConfig(UnlearnConfig):
    """CT, "convolution transpose" (winner #5, toshi_k; Deep Unlearn ``kgltop5``): the write-up's
    3 epochs and Deep Unlearn's SGD (lr 1e-3, momentum 0.9, weight decay 5e-4, batch 64, cosine)."""

    epochs: int = 3
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size"), nonnegative=("epochs", "weight_decay"))


def transpose_conv_kernels_(model: nn.Module) -> list[str]:
    """Transpose every conv kernel spatially (swap weight axes 2 and 3), in place.

    A transposed kernel computes on the transposed image what the original kernel computes on
    the image, so the features survive in a scrambled arrangement that the next layers must
    re-learn; the write-up likens it to feeding flipped images.

    Returns:
        The names of the transposed layers.

    Raises:
        ValueError: for a conv layer with a non-square kernel.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        >>> transpose_conv_kernels_(net), net[0].weight.flatten().tolist()
        (['0'], [1.0, 3.0, 2.0, 4.0])
    """
    layers = conv_layers(model)
    for name, m in layers:
        if m.kernel_size[0] != m.kernel_size[1]:
            raise ValueError(f"conv layer {name!r} has a non-square kernel {tuple(m.kernel_size)}; "
                             "CT transposes square kernels only")
    with torch.no_grad():
        for _, m in layers:
            m.weight.copy_(m.weight.transpose(2, 3).clone())
    return [n for n, _ in layers]


@register("ct", config=CTConfig, family="competition", uses=("retain",),
          summary="transpose every conv kernel, then fine-tune on the retain set",
          reference="NeurIPS 2023 unlearning challenge winner #5 (toshi_k, Kaggle discussion 458531); "
                    "Deep Unlearn CT (kgltop5)")
def ct(model: nn.Module, splits: RestrictedSplits, cfg: CTConfig, *, device, seed: int) -> nn.Module:
    """:func:`transpose_conv_kernels_`, then exactly the ``finetune`` method's loop (CE, SGD,
    cosine schedule per epoch) with CT's hyperparameters. The submitted entry ran CT in about
    half of its 512 runs and marvelworld's pseudo-label fine-tuning in the others; only CT is
    implemented (as in Deep Unlearn).
    """
    transpose_conv_kernels_(model)
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, scheduler=_loops.cosine(opt, cfg.epochs),
                            method="ct")


# --------------------------------------------------------------------------------------------
# Winner #6: DUTH / Athena "Euclid" team (KDE)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KDEConfig(UnlearnConfig):
    """KDE (winner #6; Deep Unlearn ``kgltop6``, adapted from stathiskaripidis' notebook).

    Attributes:
        warmup_epochs: distillation epochs on the validation split (SGD, constant ``warmup_lr``).
        epochs: retain epochs with hard CE + soft CE + KL (SGD, cosine from ``lr``).
        temperature: T of the soft targets.
        warmup_lr, lr, momentum, weight_decay, batch_size: SGD of both phases.
    """

    epoch_fields = ("warmup_epochs", "epochs")
    warmup_epochs: int = 3
    epochs: int = 3
    temperature: float = 5.0
    warmup_lr: float = 9e-4
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("temperature", "warmup_lr", "lr", "batch_size"),
                            nonnegative=("warmup_epochs", "epochs", "weight_decay"))


@register("kde", config=KDEConfig, family="competition", uses=("retain", "val"),
          summary="reset the first conv and the classifier, distil the original on validation data, fine-tune",
          reference="NeurIPS 2023 unlearning challenge winner #6 (DUTH / Athena 'Euclid' team; write-up known from "
                    "a digest of Kaggle discussion 458740); Deep Unlearn KDE (kgltop6)")
def kde(model: nn.Module, splits: RestrictedSplits, cfg: KDEConfig, *, device, seed: int) -> nn.Module:
    """1. Reset the first conv and the classifier (:func:`~mu_lib.unlearn.winners.reset_layer_`;
    a model without conv layers gets only its classifier reset). 2. Warm-up: minimise
    ``KL_T(student || original)`` (:func:`~mu_lib.unlearn.winners.kl_distillation`) on the
    validation split, which neither model was trained on. 3. Fine-tune on the retain set with
    ``CE(y) + softCE_T(original) + KL_T(original)``.

    The forget set is never read: the original model is the teacher only on validation and
    retain images. (Soft CE and KL differ by the teacher's entropy, so their gradients are equal;
    the recipe thus weights distillation twice.)
    """
    if cfg.warmup_epochs and splits.sizes()["val"] == 0:
        raise ValueError("kde distils on the validation split, which is empty; pass splits with val_size > 0 "
                         "or warmup_epochs=0")
    gen = torch.Generator().manual_seed(seed)
    teacher = _loops.frozen_copy(model)
    stem = first_conv(model)
    for layer in ([stem[1]] if stem is not None else []) + [classifier(model)[1]]:
        reset_layer_(layer, generator=gen)
    T = cfg.temperature
    if cfg.warmup_epochs:
        val = splits.loader("val", batch_size=cfg.batch_size, shuffle=True, seed=seed + 1, device=device)
        opt = _loops.sgd(model, lr=cfg.warmup_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

        def warm(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                t = teacher(xb)
            return kl_distillation(model(xb), t, temperature=T)

        _loss_epochs(model, val, epochs=cfg.warmup_epochs, optimizer=opt, loss_fn=warm, method="kde warm-up")

    def retain_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(xb)
        out = model(xb)
        soft_ce = -(F.softmax(t / T, dim=1) * F.log_softmax(out / T, dim=1)).sum(dim=1).mean()
        return F.cross_entropy(out, yb) + soft_ce + kl_distillation(out, t, temperature=T)

    retain = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return _loss_epochs(model, retain, epochs=cfg.epochs, optimizer=opt, scheduler=_loops.cosine(opt, cfg.epochs),
                        loss_fn=retain_loss, method="kde")


# --------------------------------------------------------------------------------------------
# Winner #7: sunkroos (RNI)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RNIConfig(UnlearnConfig):
    """RNI, reset + noise injection (winner #7, sunkroos; Deep Unlearn ``kgltop7``).

    Attributes:
        reset_epochs: epochs of fine-tuning the whole model after resetting the classifier.
        noise_epochs: epochs that each choose ``layers_per_epoch`` random weight layers, add
            noise to ``int(noise_ratio * chosen)`` of them and train only the chosen layers and
            the normalisation layers.
        fine_epochs: final epochs training every parameter; fine epoch ``i`` uses
            ``fine_lrs[i]`` (the last entry when there are fewer entries than epochs).
        layers_per_epoch: layers chosen per noise epoch (at most the number of weight layers).
        noise_ratio: fraction of the chosen layers that get noise.
        noise_std: std of the additive Gaussian noise.
        lr: learning rate of the reset and noise epochs.
        fine_lrs: learning rates of the fine epochs.
        momentum, weight_decay, batch_size: SGD (a fresh optimiser every epoch, as in the code).
    """

    epoch_fields = ("reset_epochs", "noise_epochs", "fine_epochs")
    reset_epochs: int = 1
    noise_epochs: int = 4
    fine_epochs: int = 4
    layers_per_epoch: int = 9
    noise_ratio: float = 0.7
    noise_std: float = 0.04
    lr: float = 2e-4
    fine_lrs: tuple[float, ...] = (2e-4, 2e-4, 2e-4, 1e-3)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size", "layers_per_epoch"),
                            nonnegative=("reset_epochs", "noise_epochs", "fine_epochs", "noise_std", "weight_decay"),
                            fraction=("noise_ratio",))
        if not self.fine_lrs or not all(v > 0 for v in self.fine_lrs):
            raise ValueError(f"RNIConfig.fine_lrs must be a non-empty tuple of positive rates, got {self.fine_lrs!r}")


def noise_round_(model: nn.Module, *, layers_per_epoch: int, noise_ratio: float, std: float,
                 generator: torch.Generator, exclude: frozenset[str] | set[str] = frozenset()
                 ) -> tuple[list[str], list[str]]:
    """One RNI noise round, in place: choose ``min(layers_per_epoch, L)`` of the ``L`` weight
    layers at random, then add N(0, std^2) to every parameter of ``int(noise_ratio * chosen)``
    of them, skipping those named in ``exclude`` (noised in earlier rounds).

    Returns:
        ``(chosen, noised)`` layer names; ``noised`` is a subset of ``chosen``.
    """
    layers = weight_layers(model)
    k = min(int(layers_per_epoch), len(layers))
    chosen = [layers[i] for i in sorted(torch.randperm(len(layers), generator=generator)[:k].tolist())]
    picks = sorted(torch.randperm(k, generator=generator)[:int(noise_ratio * k)].tolist())
    noised = []
    with torch.no_grad():
        for i in picks:
            name, m = chosen[i]
            if name in exclude:
                continue
            for p in m.parameters(recurse=False):
                p.add_(std * _randn(p.shape, generator, p))
            noised.append(name)
    return [n for n, _ in chosen], noised


@register("rni", config=RNIConfig, family="competition", uses=("retain",),
          summary="reset the classifier, inject noise into random layers and fine-tune them, then fine-tune all",
          reference="NeurIPS 2023 unlearning challenge winner #7 (sunkroos, Kaggle discussion 459095); "
                    "Deep Unlearn RNI (kgltop7)")
def rni(model: nn.Module, splits: RestrictedSplits, cfg: RNIConfig, *, device, seed: int) -> nn.Module:
    """Reset the classifier; ``reset_epochs`` of CE on the retain set with every parameter
    trainable (the write-up: "fine-tune the whole model"); ``noise_epochs`` of
    :func:`noise_round_` then CE with only the chosen layers and the normalisation layers
    trainable; ``fine_epochs`` of CE on everything.

    Deviations from Deep Unlearn: its reset epoch already trains only 9 random parameter
    tensors plus batch norm; it chooses parameter *tensors* (a weight or a bias) and recognises
    batch norm by "bn" in the name (so ResNet-18's shortcut batch norms can be noised); it skips
    noise on tensors *chosen* in an earlier epoch, here on layers *noised* earlier.
    """
    gen = torch.Generator().manual_seed(seed)
    reset_layer_(classifier(model)[1], generator=gen)
    layers = dict(weight_layers(model))
    norm_params = [p for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)]
    everything = list(model.parameters())
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    noised_before: set[str] = set()
    try:
        for epoch in range(cfg.reset_epochs + cfg.noise_epochs + cfg.fine_epochs):
            lr, params = cfg.lr, everything
            if cfg.reset_epochs <= epoch < cfg.reset_epochs + cfg.noise_epochs:
                chosen, noised = noise_round_(model, layers_per_epoch=cfg.layers_per_epoch,
                                              noise_ratio=cfg.noise_ratio, std=cfg.noise_std, generator=gen,
                                              exclude=noised_before)
                noised_before.update(noised)
                params = [p for n in chosen for p in layers[n].parameters(recurse=False)] + norm_params
            elif epoch >= cfg.reset_epochs + cfg.noise_epochs:
                i = epoch - cfg.reset_epochs - cfg.noise_epochs
                lr = cfg.fine_lrs[min(i, len(cfg.fine_lrs) - 1)]
            for p in everything:
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            opt = _loops.sgd(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            _loops.ce_epochs(model, loader, epochs=1, optimizer=opt, method=f"rni epoch {epoch + 1}")
    finally:
        for p in everything:
            p.requires_grad_(True)
    return model


# --------------------------------------------------------------------------------------------
# Winner #8: Ahn, Lee, Bae, Yim, Jung (forget-set-free re-initialisation + MSE)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReinitMSEConfig(UnlearnConfig):
    """Forget-set-free cycles of layer re-initialisation and output matching (winner #8, Ahn et
    al.; not in Deep Unlearn). Defaults: the write-up's "algorithm 1".

    Attributes:
        cycle_epochs: "remembering" epochs of each cycle (algorithm 1: ``(1, 2, 2)``; algorithm
            2 used ``(2, 1, 1, 1)`` with a per-epoch learning-rate list, not implemented).
        layers_per_cycle: layers drawn (with replacement) for re-initialisation each cycle.
        lr: initial learning rate of each cycle, cosine-annealed per epoch with period
            ``cosine_period`` (the write-up's T_max 2).
        input_noise_std: std of the Gaussian noise added to the (standardised) retain images
            (the final settings' "0.01 sigma"; an ablation used 0.1).
        momentum, weight_decay, batch_size: SGD. The write-up states neither optimiser nor batch
            size; these are the competition baseline's (momentum 0.9, weight decay 5e-4, batch 64).
    """

    epoch_fields = ("cycle_epochs",)
    cycle_epochs: tuple[int, ...] = (1, 2, 2)
    layers_per_cycle: int = 6
    lr: float = 1e-3
    cosine_period: int = 2
    input_noise_std: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size", "cosine_period"),
                            nonnegative=("layers_per_cycle", "input_noise_std", "weight_decay"))
        if not self.cycle_epochs or not all(isinstance(e, int) and e >= 0 for e in self.cycle_epochs):
            raise ValueError(f"ReinitMSEConfig.cycle_epochs must be a non-empty tuple of integers >= 0, "
                             f"got {self.cycle_epochs!r}")

    def total_epochs(self) -> float:
        """Epochs over all cycles."""
        return float(sum(self.cycle_epochs))

    def _scaled_epochs(self, scale: float) -> "ReinitMSEConfig":
        """Scale every cycle's epochs by the same factor (each keeps at least 1); the number of cycles
        is kept.

        Example:
            >>> ReinitMSEConfig().with_epoch_budget(4).cycle_epochs
            (1, 1, 1)
        """
        return dataclasses.replace(self, cycle_epochs=tuple(max(1, math.floor(e * scale)) for e in self.cycle_epochs))


def reinit_candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Weight layers that winner #8 may re-initialise: all but the classifier and projection
    shortcuts (``small_cnn``: conv1, conv2, fc1; ``resnet18``: its 17 3x3 convs)."""
    head = classifier(model)[1]
    return [(n, m) for n, m in weight_layers(model) if m is not head and not is_projection_shortcut(m)]


def reinit_random_layers_(model: nn.Module, *, count: int, generator: torch.Generator) -> list[str]:
    """Draw ``count`` of :func:`reinit_candidates` with replacement and reset each drawn layer
    entirely (its ``reset_parameters``); return the sorted names of the distinct reset layers.

    A model without candidates (e.g. logistic regression) is left unchanged.
    """
    candidates = reinit_candidates(model)
    if not candidates or count == 0:
        return []
    drawn = sorted(set(torch.randint(len(candidates), (int(count),), generator=generator).tolist()))
    for i in drawn:
        reset_layer_(candidates[i][1], generator=generator)
    return sorted(candidates[i][0] for i in drawn)


@register("reinit_mse", config=ReinitMSEConfig, family="competition", uses=("retain",),
          summary="cycles of random layer re-initialisation and MSE matching of the original outputs; no forget set",
          reference="NeurIPS 2023 unlearning challenge winner #8 (Ahn, Lee, Bae, Yim, Jung; Kaggle discussion 458715)")
def reinit_mse(model: nn.Module, splits: RestrictedSplits, cfg: ReinitMSEConfig, *, device, seed: int) -> nn.Module:
    """For each cycle: :func:`reinit_random_layers_`, then minimise
    ``MSE(f(x + e), f_0(x + e))`` with ``e ~ N(0, input_noise_std^2)`` on retain images, where
    ``f_0`` is the original model (eval mode); a fresh SGD and cosine schedule per cycle.

    The method declares ``uses=("retain",)``: the registry refuses it the forget set.
    """
    gen = torch.Generator().manual_seed(seed)
    teacher = _loops.frozen_copy(model)
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)

    def remember(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xn = xb + cfg.input_noise_std * _randn(xb.shape, gen, xb) if cfg.input_noise_std else xb
        with torch.no_grad():
            target = teacher(xn)
        return F.mse_loss(model(xn), target)

    for c, epochs in enumerate(cfg.cycle_epochs):
        reinit_random_layers_(model, count=cfg.layers_per_cycle, generator=gen)
        opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.cosine_period)
        _loss_epochs(model, loader, epochs=epochs, optimizer=opt, scheduler=sched, loss_fn=remember,
                     method=f"reinit_mse cycle {c + 1}")
    return model
