"""Model factories by name.

=============  ============================================================================
name           model
=============  ============================================================================
logreg         multinomial logistic regression on the flattened image
mlp            two hidden ReLU layers (64, 32 by default)
small_cnn      two 3x3 conv + max-pool blocks and two linear layers; no batch norm, so that
               :func:`mu_lib.train.fit_many` can train many copies at once with ``torch.func``
resnet18       CIFAR-style ResNet-18: torchvision's ResNet-18 with a 3x3 stride-1 stem and no
               max-pool, as in the SalUn, l1-sparse and SCRUB papers
resnet9        the fast CIFAR net of the ``gpu`` profile: the residual ResNet-9 of Page's
               DAWNBench entry (:class:`ResNet9`)
resnet9_tiny   the same network at a sixteenth of the width (4 to 32 channels): the ``gpu_smoke``
               profile's model, which runs the gpu code path in seconds on a CPU
=============  ============================================================================

Example:
    >>> from mu_lib import models
    >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=28, seed=0)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["available", "make_model", "has_batchnorm", "reinitialize", "SmallCNN", "MLP", "ResNet9"]


class MLP(nn.Sequential):
    """Flatten, then ``Linear``-``ReLU`` layers of the given widths, then a linear output layer."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (64, 32)) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """Two conv blocks (3x3 conv, ReLU, 2x2 max-pool) and a two-layer classifier head."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 16,
                 hidden: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        side = image_size // 4
        self.fc1 = nn.Linear(2 * width * side * side, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return torch.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


class _Residual(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                               nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(nn.Sequential):
    """The residual ResNet-9 of Page's DAWNBench entry ("How to train your ResNet", 2018).

    ``prep`` (conv-BN-ReLU, ``w`` channels), ``layer1`` (``2w``, max-pool, plus a residual block
    of two conv-BN-ReLU), ``layer2`` (``4w``, max-pool), ``layer3`` (``8w``, max-pool, plus a
    residual block), a global max-pool, a linear layer without bias and the output scaled by
    ``logit_scale`` = 0.125, as in that entry (the scale keeps the early logits small at high
    learning rates). With ``width`` = 64 it is the original (6.6 M parameters); airbench's nets
    (Jordan 2024) descend from it. Page's later tricks (a frozen whitening layer, ghost batch
    norm, CELU) are training-speed records, not the architecture, and are left out. Deviation:
    the global max-pool is adaptive, so other image sizes (e.g. 28x28 grayscale) work too.

    Example:
        >>> net = ResNet9(in_channels=3, num_classes=10, width=8)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 64, logit_scale: float = 0.125) -> None:
        w = int(width)
        if w < 1:
            raise ValueError(f"width must be positive, got {width}")
        super().__init__(OrderedDict([
            ("prep", _conv_bn(in_channels, w)),
            ("layer1", _conv_bn(w, 2 * w, pool=True)),
            ("res1", _Residual(nn.Sequential(_conv_bn(2 * w, 2 * w), _conv_bn(2 * w, 2 * w)))),
            ("layer2", _conv_bn(2 * w, 4 * w, pool=True)),
            ("layer3", _conv_bn(4 * w, 8 * w, pool=True)),
            ("res3", _Residual(nn.Sequential(_conv_bn(8 * w, 8 * w), _conv_bn(8 * w, 8 * w)))),
            ("pool", nn.AdaptiveMaxPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(8 * w, num_classes, bias=False)),
        ]))
        self.logit_scale = float(logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.logit_scale


_FACTORIES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "logreg": lambda c, k, s: nn.Sequential(nn.Flatten(), nn.Linear(c * s * s, k)),
    "mlp": lambda c, k, s: MLP(c * s * s, k),
    "small_cnn": lambda c, k, s: SmallCNN(c, k, s),
    "resnet18": _resnet18,
    "resnet9": lambda c, k, s: ResNet9(c, k, width=64),
    "resnet9_tiny": lambda c, k, s: ResNet9(c, k, width=4),
}


def available() -> list[str]:
    """Names accepted by :func:`make_model`."""
    return sorted(_FACTORIES)


def make_model(name: str, *, num_classes: int, in_channels: int, image_size: int,
               seed: int | None = None) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: one of :func:`available`.
        num_classes: number of outputs.
        in_channels: image channels.
        image_size: image side length in pixels (square images).
        seed: seed of the initialisation; ``None`` uses torch's global generator as it stands.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ValueError: for an unknown name or non-positive sizes.

    Example:
        >>> a = make_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=1)
        >>> b = make_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=1)
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available models are {available()}")
    for arg, val in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if int(val) < 1:
            raise ValueError(f"{arg} must be positive, got {val}")
    if seed is None:
        net = _FACTORIES[name](in_channels, num_classes, image_size)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = _FACTORIES[name](in_channels, num_classes, image_size)
    net.mu_spec = {"name": name, "num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    return net


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains batch-norm layers (which :func:`mu_lib.train.fit_many` cannot vmap)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def reinitialize(model: nn.Module, *, seed: int) -> nn.Module:
    """Re-draw every parameter of ``model`` in place, as a fresh model seeded with ``seed``.

    A model built by :func:`make_model` gets exactly the initialisation that
    ``make_model(..., seed=seed)`` gives. Any other model has every submodule with a
    ``reset_parameters`` method (linear, conv and batch-norm layers) reset, batch-norm running
    statistics included, under a generator seeded with ``seed``.

    Returns:
        ``model`` itself.

    Example:
        >>> net = make_model("mlp", num_classes=3, in_channels=1, image_size=2, seed=0)
        >>> fresh = make_model("mlp", num_classes=3, in_channels=1, image_size=2, seed=5)
        >>> _ = reinitialize(net, seed=5)
        >>> all(torch.equal(p, q) for p, q in zip(net.parameters(), fresh.parameters()))
        True
    """
    spec = getattr(model, "mu_spec", None)
    if spec is not None:
        fresh = make_model(**spec, seed=seed)
        device = next(model.parameters()).device
        model.load_state_dict(fresh.state_dict())
        return model.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    return model
