"""Winner #7, sunkroos (``rni``; Deep Unlearn ``kgltop7``): reset the classifier, inject noise into random
layers and fine-tune them, then fine-tune everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn._layers import (
    NORM_TYPES,
    _randn,
    classifier,
    reset_layer_,
    weight_layers,
)
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, UnlearnConfig, register

__all__ = ["RNIConfig", "noise_round_", "rni"]

# --------------------------------------------------------------------------------------------
# Winner #7: sunkroos (RNI)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RNIConfig(UnlearnConfig):
    """RNI, reset + noise injection (winner #7, sunkroos; Deep Unlearn ``kgltop7``).

    Attributes:
        reset_epochs: epochs of fine-tuning the whole model after resetting the classifier.
        noise_epochs: length of the noise phase, in epochs, split into ``noise_rounds`` equal
            rounds; each round chooses ``layers_per_epoch`` random weight layers, adds noise to
            ``int(noise_ratio * chosen)`` of them and trains only the chosen layers and the
            normalisation layers.
        fine_epochs: length of the final phase training every parameter, split into
            ``len(fine_lrs)`` equal segments, segment ``i`` at ``fine_lrs[i]`` with a fresh
            optimiser.
        noise_rounds: noise injections (the write-up: one per noise epoch, 4).
        layers_per_epoch: layers chosen per noise round (at most the number of weight layers).
        noise_ratio: fraction of the chosen layers that get noise.
        noise_std: std of the additive Gaussian noise.
        lr: learning rate of the reset and noise epochs.
        fine_lrs: learning rates of the fine epochs.
        momentum, weight_decay, batch_size: SGD (a fresh optimiser every round and segment; in the
            code, every epoch).

    Budget rule: every epoch passes over the retain set (weight 0.9); the three phase lengths are
    fractional and scale together, while the number of noise rounds and the sequence of fine
    learning rates are kept, each round and segment getting proportionally fewer steps. At the
    defaults this is the code's schedule epoch for epoch; per epoch, a budget of 3 would keep
    one noise round and drop the final segment at the higher rate.
    """

    epoch_fields = ("reset_epochs", "noise_epochs", "fine_epochs")
    epoch_weights = (NOMINAL_FRACTIONS["retain"],) * 3
    reset_epochs: float = 1.0
    noise_epochs: float = 4.0
    fine_epochs: float = 4.0
    noise_rounds: int = 4
    layers_per_epoch: int = 9
    noise_ratio: float = 0.7
    noise_std: float = 0.04
    lr: float = 2e-4
    fine_lrs: tuple[float, ...] = (2e-4, 2e-4, 2e-4, 1e-3)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("noise_rounds", "layers_per_epoch", "batch_size"),
                            positive=("lr", "batch_size", "layers_per_epoch", "noise_rounds"),
                            nonnegative=("reset_epochs", "noise_epochs", "fine_epochs", "noise_std", "weight_decay"),
                            fraction=("noise_ratio",), below_one=("momentum",))
        if not isinstance(self.fine_lrs, tuple) or not self.fine_lrs or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in self.fine_lrs):
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
    trainable (the write-up: "fine-tune the whole model"); ``noise_rounds`` rounds of
    :func:`noise_round_` followed by CE with only the chosen layers and the normalisation layers
    trainable; then ``fine_epochs`` of CE on everything, in segments at the rates ``fine_lrs``.

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
    # (epochs, learning rate, trainable parameters or None for a noise round, label) of every segment
    segments: list[tuple[float, float, list | None, str]] = [(cfg.reset_epochs, cfg.lr, everything, "reset")]
    segments += [(cfg.noise_epochs / cfg.noise_rounds, cfg.lr, None, f"noise {r + 1}") for r in range(cfg.noise_rounds)]
    segments += [(cfg.fine_epochs / len(cfg.fine_lrs), lr, everything, f"fine {i + 1}")
                 for i, lr in enumerate(cfg.fine_lrs)]
    try:
        for epochs, lr, params, label in segments:
            if epochs <= 0:
                continue
            if params is None:
                chosen, noised = noise_round_(model, layers_per_epoch=cfg.layers_per_epoch,
                                              noise_ratio=cfg.noise_ratio, std=cfg.noise_std, generator=gen,
                                              exclude=noised_before)
                noised_before.update(noised)
                params = [p for n in chosen for p in layers[n].parameters(recurse=False)] + norm_params
            for p in everything:
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            opt = _loops.sgd(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            _loops.run_phase(model, loader, epochs=epochs, optimizer=opt, method=f"rni {label}",
                             loss_fn=lambda xb, yb: F.cross_entropy(model(xb), yb))
    finally:
        for p in everything:
            p.requires_grad_(True)
    return model
