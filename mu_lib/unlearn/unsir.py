"""UNSIR: error-maximising noise, impair, repair (Tarun et al., IEEE TNNLS 2023).

``unsir`` never trains on the forget examples themselves. For each class to forget it learns a
batch of *error-maximising noise*: inputs that the original model classifies as badly as possible
as that class, kept small by an L2 penalty,

.. math:: \\max_N \\; \\mathrm{CE}\\bigl(f(N), c\\bigr) - \\lambda \\lVert N \\rVert_2^2 .

**Impair**: one epoch on the noise (labelled with its class) mixed with a subset of the retain
set, at a high learning rate, which wrecks what the model knows about the class. **Repair**: one
epoch on the retain subset alone, which restores the other classes.

Example:
    >>> from mu_lib import data, models
    >>> s = data.make_splits("digits", forget="class", forget_class=3, val_size=50, test_size=300, seed=0)
    >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    >>> noise = error_maximising_noise(net, 3, shape=(1, 8, 8), batch=4, steps=2, lr=0.1, l2=0.1,
    ...                                generator=torch.Generator().manual_seed(0))
    >>> tuple(noise.shape)
    (4, 1, 8, 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, UnlearnConfig, register

__all__ = ["UNSIRConfig", "error_maximising_noise", "unsir"]


def error_maximising_noise(model: nn.Module, label: int, *, shape: tuple[int, ...], batch: int, steps: int,
                           lr: float, l2: float, generator: torch.Generator) -> torch.Tensor:
    """A batch of noise that ``model`` (in eval mode, unchanged) misclassifies as badly as it can as
    ``label``: Adam on ``-CE(f(N), label) + l2 * mean_i ||N_i||^2`` from ``N ~ N(0, 1)``.

    Returns:
        The noise ``[batch, *shape]``, detached, on the model's device.
    """
    device = next(model.parameters()).device
    noise = torch.randn((batch, *shape), generator=generator).to(device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=lr)
    target = torch.full((batch,), int(label), device=device, dtype=torch.long)
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            loss = -F.cross_entropy(model(noise), target) + l2 * noise.pow(2).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)
    return noise.detach()


@dataclass(frozen=True)
class UNSIRConfig(UnlearnConfig):
    """The official notebook (``Machine Unlearning.ipynb`` of Fast-Machine-Unlearning): noise batches
    of 256, Adam at 0.1 for 5 x 8 = 40 steps with L2 weight 0.1; the impair set is each noise batch
    20 times plus the first 1,000 retain examples of every retained class, one epoch of Adam at
    0.02; the repair is one epoch of Adam at 0.01 on that retain subset; batches of 256.

    Budget rule: the impair epoch trains on the retain subset and the noise (weight 1), the repair
    epoch on the retain subset (weight 0.9); both scale together. The noise steps are not epochs
    and are kept.

    Attributes:
        noise_batch: noise images per forgotten class (for a class only partly forgotten, as many
            as its forget examples, at most this).
        noise_steps: Adam steps of the noise optimisation.
        noise_lr: Adam's rate for the noise.
        noise_l2: weight of the noise's L2 penalty (the notebook's 0.1).
        noise_copies: times each noise batch appears in the impair set (the notebook's 20 batches).
        retain_per_class: retain examples per class in the impair and repair sets (the first ones
            in the retain set's order); ``None`` takes them all.
        impair_epochs, impair_lr, repair_epochs, repair_lr: the two Adam phases.
        batch_size: examples per step of both phases.
    """

    epoch_fields = ("impair_epochs", "repair_epochs")
    epoch_weights = (1.0, NOMINAL_FRACTIONS["retain"])
    noise_batch: int = 256
    noise_steps: int = 40
    noise_lr: float = 0.1
    noise_l2: float = 0.1
    noise_copies: int = 20
    retain_per_class: int | None = 1000
    impair_epochs: int = 1
    impair_lr: float = 0.02
    repair_epochs: int = 1
    repair_lr: float = 0.01
    batch_size: int = 256

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("noise_batch", "noise_steps", "noise_copies", "impair_epochs",
                                           "repair_epochs", "batch_size"),
                            positive=("noise_batch", "noise_lr", "noise_copies", "impair_lr", "repair_lr",
                                      "batch_size"),
                            nonnegative=("noise_steps", "noise_l2", "impair_epochs", "repair_epochs"))
        if self.retain_per_class is not None:
            _loops.check_config(self, integer=("retain_per_class",), positive=("retain_per_class",))


def _retain_subset(y: torch.Tensor, per_class: int | None) -> torch.Tensor:
    if per_class is None:
        return torch.arange(y.shape[0])
    keep = [torch.nonzero(y == c).flatten()[:per_class] for c in torch.unique(y)]
    return torch.sort(torch.cat(keep)).values


@register("unsir", config=UNSIRConfig, family="error-maximising noise", uses=("retain", "forget"),
          summary="learn noise that maximises the error on the forgotten classes; impair on it, then repair",
          reference="Tarun et al. 2023 (UNSIR, 'Fast yet effective machine unlearning')")
def unsir(model: nn.Module, splits: RestrictedSplits, cfg: UNSIRConfig, *, device, seed: int) -> nn.Module:
    """One :func:`error_maximising_noise` batch per class of the forget set; impair (train mode,
    Adam, CE) on the noise with its class as label plus the retain subset, shuffled; repair on the
    retain subset. The forget set is read for its labels only.

    Deviations: the notebook labels every noise batch with class 0 (its ``class_num`` is never
    updated; correct only for the first forgotten class), here each batch carries its own class;
    the noise is optimised with the model in eval mode (the notebook leaves it in train mode, so
    noise batches move batch-norm statistics). UNSIR is defined for class forgetting; for a forget
    set that is not a whole class (random forgetting), the same recipe runs with one noise batch
    per class that occurs in the forget set, as large as the class's forget examples (at most
    ``noise_batch``), and the retain subset keeps every class.
    """
    gen = torch.Generator().manual_seed(int(seed))
    _, yf = splits.xy("forget")
    xr, yr = splits.xy("retain")
    shape = tuple(xr.shape[1:])
    noises, labels = [], []
    whole = set(torch.unique(yf).tolist()) - set(torch.unique(yr).tolist())
    for c in torch.unique(yf).tolist():
        batch = cfg.noise_batch if c in whole else min(cfg.noise_batch, int((yf == c).sum()))
        n = error_maximising_noise(model, int(c), shape=shape, batch=batch, steps=cfg.noise_steps,
                                   lr=cfg.noise_lr, l2=cfg.noise_l2, generator=gen).cpu()
        noises.append(n.repeat(cfg.noise_copies, *([1] * len(shape))))
        labels.append(torch.full((n.shape[0] * cfg.noise_copies,), int(c), dtype=torch.long))
    keep = _retain_subset(yr, cfg.retain_per_class)
    x_sub, y_sub = xr[keep], yr[keep]
    impair = TensorLoader(torch.cat([*noises, x_sub]), torch.cat([*labels, y_sub]), batch_size=cfg.batch_size,
                          shuffle=True, generator=torch.Generator().manual_seed(int(seed) + 1), device=device)
    repair = TensorLoader(x_sub, y_sub, batch_size=cfg.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(int(seed) + 2), device=device)
    for loader, epochs, lr, label in ((impair, cfg.impair_epochs, cfg.impair_lr, "impair"),
                                      (repair, cfg.repair_epochs, cfg.repair_lr, "repair")):
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        _loops.ce_epochs(model, loader, epochs=epochs, optimizer=opt, method=f"unsir {label}")
    return model
