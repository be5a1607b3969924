"""The architecture vocabulary shared by the methods: blocks, conv and weight layers, the classifier,
projection shortcuts and layer resets (private: methods call these, users meet them through the
methods' docstrings and :mod:`mu_lib.unlearn.winners`).

The competition recipes name layers of a torchvision ResNet-18 (``conv1``, ``fc``, ``bn``...). Here
they are defined by module type so that every method runs on any model of :mod:`mu_lib.models`:

* *blocks*: the top-level children that hold parameters (a top-level normalisation layer joins the
  block before it); the last block is the classifier;
* *conv layers*: every ``nn.Conv2d``, in registration order;
* *first conv*: the first conv layer (``small_cnn``: ``conv1``; ``resnet18``: the stem ``conv1``);
* *classifier* ("last fc"): the last ``nn.Linear`` in registration order (``fc`` in both);
* *weight layers*: every ``nn.Conv2d`` and ``nn.Linear`` (weight and bias together);
  normalisation layers are never weight layers;
* *projection shortcut*: a 1x1 convolution (in ResNet-18 exactly ``layerK.0.downsample.0``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
"""Normalisation layers: never weight layers, and joined to the block before them."""


def blocks(model: nn.Module) -> list[tuple[str, ...]]:
    """The model's blocks: its top-level children that hold parameters, in order.

    A top-level normalisation layer (batch, group or layer norm) joins the block before it, so
    that a stem ``conv1`` + ``bn1`` counts as one block. The last block is the classifier.

    * ``small_cnn``: ``(conv1,) (conv2,) (fc1,) (fc,)``;
    * ``resnet18``: ``(conv1, bn1) (layer1,) (layer2,) (layer3,) (layer4,) (fc,)``.

    Returns:
        One tuple of child names per block.

    Example:
        >>> from mu_lib.models import make_model
        >>> blocks(make_model("small_cnn", num_classes=10, in_channels=1, image_size=8))
        [('conv1',), ('conv2',), ('fc1',), ('fc',)]
    """
    out: list[list[str]] = []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, NORM_TYPES) and out:
            out[-1].append(name)
        else:
            out.append([name])
    if not out:
        raise ValueError(f"{type(model).__name__} has no child module with parameters")
    return [tuple(b) for b in out]


def block_parameters(model: nn.Module, names: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` pairs of the top-level children called ``names`` (full dotted names)."""
    wanted = tuple(names)
    return [(n, p) for n, p in model.named_parameters() if n.split(".", 1)[0] in wanted]



def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` of ``model`` with its name, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Conv2d`` and ``nn.Linear`` with its name, in registration order.

    Example:
        >>> from mu_lib import models
        >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=28, seed=0)
        >>> [n for n, _ in weight_layers(net)]
        ['conv1', 'conv2', 'fc1', 'fc']
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first conv layer (ResNet-18's stem ``conv1``), or ``None`` for a model without one."""
    convs = conv_layers(model)
    return convs[0] if convs else None


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The output layer: the last ``nn.Linear`` in registration order (``fc`` in ResNet-18).

    Raises:
        ValueError: if the model has no linear layer.
    """
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to serve as the classifier")
    return linears[-1]


def is_projection_shortcut(module: nn.Module) -> bool:
    """Whether ``module`` is a 1x1 convolution (a ResNet's projection shortcut)."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1)


def reset_layer_(module: nn.Module, *, generator: torch.Generator) -> nn.Module:
    """Re-draw a layer's parameters with its own ``reset_parameters`` (PyTorch's default init).

    The draw happens on a CPU copy under a seed taken from ``generator``, so that it does not
    depend on the device.

    Example:
        >>> layer = nn.Linear(3, 2)
        >>> a = reset_layer_(copy.deepcopy(layer), generator=torch.Generator().manual_seed(0)).weight
        >>> b = reset_layer_(copy.deepcopy(layer), generator=torch.Generator().manual_seed(0)).weight
        >>> bool(torch.equal(a, b)), bool(torch.equal(a, layer.weight))
        (True, False)
    """
    if not hasattr(module, "reset_parameters"):
        raise ValueError(f"{type(module).__name__} has no reset_parameters()")
    fresh = copy.deepcopy(module).to("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        fresh.reset_parameters()
    with torch.no_grad():
        for p, q in zip(module.parameters(recurse=False), fresh.parameters(recurse=False)):
            p.copy_(q.to(p.device))
    return module


def _randn(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)
