"""Influence unlearning (IU): one Newton-like step that removes the forget set's influence.

``influence`` follows Koh and Liang's influence functions as Izzo et al. (AISTATS 2021) use them
for deletion, in the form of the Unlearn-Sparse / Unlearn-Saliency code (``Wfisher``), which is
also Deep Unlearn's IU. Removing the forget set from the empirical risk moves its minimiser, to
first order, by ``H^-1 v`` with

.. math:: v = \\frac{1}{n_f + n_r} G_f - \\frac{n_f}{(n_f + n_r)\\, n_r} G_r ,

where ``G_f`` and ``G_r`` are the summed per-example gradients of the cross-entropy over the
forget and the retain set, and ``H`` is the Hessian of the retain loss, approximated by the
empirical Fisher of single retain examples through WoodFisher's rank-one (Sherman-Morrison)
updates. The update is ``theta <- theta + alpha * H^-1 v``.

Example:
    >>> import torch
    >>> g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> woodfisher_recursion(torch.tensor([1.0, 2.0]), g, n=10).tolist()
    [0.5454545617103577, 2.0]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import cost
from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import RestrictedSplits, UnlearnConfig, register

__all__ = ["InfluenceConfig", "summed_gradient", "per_example_gradients", "woodfisher_recursion", "influence"]


def _flat(grads: Iterable[torch.Tensor | None], params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def summed_gradient(model: nn.Module, loader: TensorLoader) -> tuple[torch.Tensor, int]:
    """The sum over the loader's examples of the gradient of their cross-entropy, flattened, and the
    number of examples (the code's ``sam_grad(batch mean) * batch size``, summed), in eval mode."""
    params = [p for p in model.parameters()]
    total = torch.zeros(sum(p.numel() for p in params), device=params[0].device)
    count = 0
    was_training = model.training
    model.eval()
    try:
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb, reduction="sum")
            total += _flat(torch.autograd.grad(loss, params, allow_unused=True), params)
            count += int(yb.shape[0])
    finally:
        model.train(was_training)
    return total, count


def per_example_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Flattened gradients of the cross-entropy of each example, ``[N, number of parameters]``
    (``torch.func.vmap`` over ``grad``, model in eval mode; the same as a batch-size-1 loop)."""
    from torch.func import functional_call, grad, vmap

    was_training = model.training
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    try:
        g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    finally:
        model.train(was_training)
    cost.record(int(x.shape[0]), backward=True)  # vmap hides these passes from the hooks
    return torch.cat([g[n].reshape(x.shape[0], -1) for n in params], dim=1)


def woodfisher_recursion(v: torch.Tensor, grads: Iterable[torch.Tensor], *, n: int) -> torch.Tensor:
    """The code's WoodFisher estimate of ``H^-1 v`` from single-example gradients ``g_0, g_1, ...``.

    ``k = v``, ``o = g_0``; for every later ``g``: ``t = o . g``, ``k -= (k . g) / (n + t) * o`` and
    ``o -= t / (n + t) * o``, exactly as ``woodfisher`` in Unlearn-Sparse / Unlearn-Saliency. (The
    vector ``o`` stays parallel to ``g_0``: the recursion removes from ``v`` its components along
    ``g_0`` in proportion to how the later gradients correlate with it.)
    """
    k = v.clone()
    o: torch.Tensor | None = None
    for g in grads:
        if o is None:
            o = g.clone()
            continue
        t = torch.dot(o, g)
        k -= (torch.dot(k, g) / (n + t)) * o
        o -= (t / (n + t)) * o
    return k


@dataclass(frozen=True)
class InfluenceConfig(UnlearnConfig):
    """IU as in Unlearn-Sparse's ``Wfisher`` (and Deep Unlearn's ``iu.py``): ``alpha`` 0.2 (the
    repositories' argument default; Deep Unlearn searches it in [0, 1], and reruns on SVHN use 2),
    ``woodfisher_n`` 1000 (the code's ``N``; it processes the first ``N + 2`` retain examples in
    their stored order).

    Budget rule: no epochs (one forward and backward pass over the forget and the retain set and
    ``N + 2`` single-example gradients); a budget leaves it unchanged.

    Cost: the example passes (:mod:`mu_lib.cost`) count the gradient work, the single-example
    gradients included. They leave out the recursion itself (``N + 1`` steps of vector operations
    the size of the model, no passes), and single-example gradients run far below the throughput
    of batched training, so IU's wall time is a larger share of retraining's than its passes.

    Attributes:
        alpha: step size of the update ``theta + alpha * H^-1 v``.
        woodfisher_n: ``N`` of the recursion (both its denominator and, plus 2, its number of
            retain examples).
        batch_size: examples per batch of the gradient sums.
        per_example_batch: examples whose single gradients are computed at once (memory: this
            many gradients of the model's size).
    """

    epoch_fields = ()
    alpha: float = 0.2
    woodfisher_n: int = 1000
    batch_size: int = 256
    per_example_batch: int = 32

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("woodfisher_n", "batch_size", "per_example_batch"),
                            positive=("woodfisher_n", "batch_size", "per_example_batch"), nonnegative=("alpha",))


@register("influence", config=InfluenceConfig, family="influence", uses=("retain", "forget"),
          summary="one Newton-like step: the forget set's influence through a WoodFisher inverse Hessian",
          reference="Koh and Liang 2017; Izzo et al. 2021; Unlearn-Sparse IU (Wfisher); Deep Unlearn IU")
def influence(model: nn.Module, splits: RestrictedSplits, cfg: InfluenceConfig, *, device, seed: int) -> nn.Module:
    """:func:`summed_gradient` over the forget and the retain set, ``v`` as in the module docstring,
    :func:`woodfisher_recursion` over the single-example gradients of the first ``N + 2`` retain
    examples (in the retain set's order, as the code's unshuffled loader), then
    ``theta <- theta + alpha * k``. Deterministic: the seed plays no part.
    """
    g_f, n_f = summed_gradient(model, splits.loader("forget", batch_size=cfg.batch_size, device=device))
    g_r, n_r = summed_gradient(model, splits.loader("retain", batch_size=cfg.batch_size, device=device))
    v = g_f / (n_f + n_r) - g_r * (n_f / ((n_f + n_r) * n_r))
    xr, yr = splits.xy("retain")
    m = min(cfg.woodfisher_n + 2, int(yr.shape[0]))

    def gradients() -> Iterable[torch.Tensor]:
        for start in range(0, m, cfg.per_example_batch):
            stop = min(m, start + cfg.per_example_batch)
            yield from per_example_gradients(model, xr[start:stop].to(device), yr[start:stop].to(device))

    k = woodfisher_recursion(v, gradients(), n=cfg.woodfisher_n)
    with torch.no_grad():
        start = 0
        for p in model.parameters():
            p.add_(cfg.alpha * k[start:start + p.numel()].view_as(p))
            start += p.numel()
    return model
