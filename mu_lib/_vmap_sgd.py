"""SGD of many small models at once with ``torch.func.vmap`` (private: :func:`mu_lib.train.fit_many`).

The parameters of ``M`` models are stacked, every step maps the per-model loss gradient over
them, and the update mirrors ``torch.optim.SGD`` (dampening 0, no Nesterov) op for op, so that in
fp32 the result equals a loop of :func:`mu_lib.train.fit` up to floating-point reassociation.

On the fast path the gradient runs under the same autocast as :func:`~mu_lib.train.fit`. For
fp16 each model gets its own dynamic loss scale with ``torch.amp.GradScaler``'s rule (start at
2^16, halve and skip the step when a gradient overflows, double after 2,000 good steps), kept on
the device as a vector, so no step waits for the host. Channels-last does not apply to the
mapped 5-D batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import cost, runtime
from mu_lib.fastpath import FastPath

_INIT_SCALE, _GROWTH_INTERVAL = 2.0 ** 16, 2000


def fit_chunk(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, seeds: list[int], *,
              epochs: int, batch_size: int, rate: Callable[[int, int], float], lr: float, momentum: float,
              weight_decay: float, label_smoothing: float, fast: FastPath, progress: bool | None,
              desc: str) -> list[nn.Module]:
    """Train ``nets`` (same architecture, on ``fast.device``) together; model ``i`` on rows ``idx[i]``.

    Args:
        nets: freshly initialised models, one per seed.
        x, y: the data, on the device.
        idx: ``[M, n]`` training rows per model, on the device.
        seeds: seed of each model's data order.
        epochs, batch_size, momentum, weight_decay, label_smoothing: as in ``fit``.
        rate: ``rate(step, total) -> learning rate`` (``fit``'s schedule).
        lr: the peak learning rate (for error messages).
        fast: the fast path (its autocast; fp16 adds per-model loss scaling).
        progress, desc: the progress bar.

    Returns:
        The trained models, in eval mode.
    """
    from torch.func import functional_call, grad, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    base.train()

    def loss_one(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with fast.autocast():
            out = functional_call(base, (p, b), (xb,))
        return F.cross_entropy(out.float(), yb, label_smoothing=label_smoothing)

    def scaled_loss(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return loss_one(p, b, xb, yb) * s

    scaling = fast.name == "fp16"
    grad_all = vmap(grad(scaled_loss)) if scaling else vmap(grad(loss_one))
    loss_all = vmap(loss_one)
    dev = x.device
    gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
    m, n = idx.shape
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    bufs: dict[str, torch.Tensor] | None = None
    scale = torch.full((m,), _INIT_SCALE, device=dev)
    good = torch.zeros(m, dtype=torch.long, device=dev)
    has_buf = torch.zeros(m, dtype=torch.bool, device=dev)
    step = 0
    for epoch in runtime.progress(range(epochs), enabled=progress, desc=desc, leave=False):
        perms = torch.stack([torch.randperm(n, generator=g, device=dev) for g in gens])
        order = torch.gather(idx, 1, perms)
        for b in range(steps_per_epoch):
            rows = order[:, b * batch_size:(b + 1) * batch_size]
            xb, yb = x[rows], y[rows]
            cost.record(rows.numel(), backward=True)  # vmap hides the per-model passes from the hooks
            step_lr = rate(step, total)
            if scaling:
                grads = grad_all(params, buffers, xb, yb, scale)
                bufs = _scaled_update(params, grads, bufs, scale, good, has_buf, lr=step_lr, momentum=momentum,
                                      weight_decay=weight_decay)
            else:
                grads = grad_all(params, buffers, xb, yb)
                # The update mirrors torch.optim.SGD (dampening 0, no Nesterov) op for op.
                new_bufs = {}
                for k, p in params.items():
                    d_p = grads[k]
                    if weight_decay != 0:
                        d_p = d_p.add(p, alpha=weight_decay)
                    if momentum != 0:
                        d_p = d_p.clone() if bufs is None else bufs[k].mul_(momentum).add_(d_p)
                        new_bufs[k] = d_p
                    p.add_(d_p, alpha=-step_lr)
                bufs = new_bufs if momentum != 0 else None
            step += 1
        if epoch == epochs - 1 or epoch == 0:
            with torch.no_grad():
                last = loss_all(params, buffers, xb, yb)
            if not torch.isfinite(last).all():
                bad = torch.nonzero(~torch.isfinite(last)).flatten().tolist()
                raise FloatingPointError(f"training loss became non-finite for seeds {[seeds[i] for i in bad]} "
                                         f"in epoch {epoch + 1}; try a smaller learning rate than {lr}")
    out = []
    for i, net in enumerate(nets):
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(params[name][i])
        out.append(net.eval())
    return out


def _scaled_update(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                   bufs: dict[str, torch.Tensor] | None, scale: torch.Tensor, good: torch.Tensor,
                   has_buf: torch.Tensor, *, lr: float, momentum: float, weight_decay: float
                   ) -> dict[str, torch.Tensor] | None:
    """One SGD step per model from loss-scaled gradients; a model whose gradients overflowed skips
    its step (parameters and momentum untouched) and halves its scale, as ``GradScaler`` does.
    ``scale``, ``good`` and ``has_buf`` are updated in place."""
    m = scale.shape[0]
    inv = (1.0 / scale)
    unscaled = {k: g * inv.view(m, *([1] * (g.ndim - 1))) for k, g in grads.items()}
    finite = torch.ones(m, dtype=torch.bool, device=scale.device)
    for g in unscaled.values():
        finite &= torch.isfinite(g).flatten(1).all(1)
    new_bufs: dict[str, torch.Tensor] = {}
    for k, p in params.items():
        ok = finite.view(m, *([1] * (p.ndim - 1)))
        d_p = torch.where(ok, unscaled[k], torch.zeros_like(p))
        if weight_decay != 0:
            d_p = d_p.add(p, alpha=weight_decay)
        if momentum != 0:
            prev = bufs[k] if bufs is not None else torch.zeros_like(p)
            started = has_buf.view(m, *([1] * (p.ndim - 1)))
            moved = torch.where(started, prev * momentum + d_p, d_p)
            new_bufs[k] = torch.where(ok, moved, prev)
            d_p = new_bufs[k]
        p.sub_(torch.where(ok, d_p, torch.zeros_like(p)) * lr)
    has_buf |= finite
    good.copy_(torch.where(finite, good + 1, torch.zeros_like(good)))
    grow = good >= _GROWTH_INTERVAL
    scale.copy_(torch.where(finite, torch.where(grow, scale * 2.0, scale), scale * 0.5))
    good.masked_fill_(grow, 0)
    return new_bufs if momentum != 0 else None
