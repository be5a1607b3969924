"""Does a model fit a dataset? Checked before any unlearning method trains (private; the face
re-exports :func:`check_model_fits`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _first_layer(model: nn.Module) -> str:
    """What the model's first weight layer expects, in words (for error messages)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return f"its first layer {name!r} is a {type(m).__name__} with {m.in_channels} input channels"
        if isinstance(m, nn.Linear):
            return f"its first layer {name!r} is a Linear layer with {m.in_features} input features"
    return "its first layer is neither a convolution nor a linear layer"


def check_model_fits(model: nn.Module, data: Any) -> int:
    """Check, before any training, that ``model`` takes the dataset's examples and covers its labels.

    One all-zero example of the dataset's shape is passed through the model (in eval mode, without
    gradients; nothing is read from any split). The output must be ``[1, K]`` with ``K`` at least
    the dataset's number of classes, and every label of the dataset must be below ``K``.

    Args:
        model: the network.
        data: a :class:`~mu_lib.data.Dataset` (``x``, ``y``, ``num_classes``).

    Returns:
        ``K``, the number of classes the model outputs.

    Raises:
        ValueError: naming the data's example shape and what the model expects, or the labels'
            range and the model's output shape.

    Example:
        >>> from mu_lib import data, models
        >>> ds = data.load_dataset("digits")
        >>> check_model_fits(models.make_model("mlp", num_classes=10, in_channels=1, image_size=8), ds)
        10
        >>> check_model_fits(models.make_model("mlp", num_classes=5, in_channels=1, image_size=8), ds)
        Traceback (most recent call last):
        ...
        ValueError: the data's labels run from 0 to 9 (10 classes) but the model outputs 5 classes (output shape (1, 5))
    """
    shape = tuple(data.x.shape[1:])
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *shape), device=device, dtype=dtype))
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"the model cannot take the data: its examples have shape {shape} and "
                         f"{_first_layer(model)} ({str(err).splitlines()[0]})") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must map examples of shape {shape} to logits of shape [1, K]; got {got}")
    k = int(out.shape[1])
    ymax = int(data.y.max()) if len(data.y) else -1
    if ymax >= k or data.num_classes > k:
        raise ValueError(f"the data's labels run from 0 to {ymax} ({data.num_classes} classes) but the model outputs "
                         f"{k} classes (output shape {tuple(out.shape)})")
    return k
