"""Winners #1 to #4 of the NeurIPS 2023 Machine Unlearning Challenge: ``fcs``, ``msg``, ``cfw``,
``prmq`` (family ``"competition"``).

The overview of all eight recipes, the architecture vocabulary (first conv, classifier, weight
layers, projection shortcuts) and the shared building blocks are in
:mod:`mu_lib.unlearn.winners`.

Example:
    >>> from mu_lib import unlearn
    >>> cfg = unlearn.get("fcs", epoch_budget=6).config
    >>> cfg.stage1_epochs, cfg.epochs
    (1, 5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from mu_lib import runtime
from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import RestrictedSplits, UnlearnConfig, register
from mu_lib.unlearn.winners import (_loss_epochs, _randn, contrastive_forget_loss, conv_layers, first_conv,
                                    kl_to_uniform, predictive_entropy, weight_layers)

__all__ = ["FCSConfig", "MSGConfig", "CFWConfig", "PRMQConfig", "msg_gradients", "small_gradient_masks",
           "reinit_kaiming_", "msg_lr_factor", "perturb_conv_weights_", "cfw_class_weights", "prune_and_reinit_"]


# --------------------------------------------------------------------------------------------
# Winner #1: fanchuan (FCS)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FCSConfig(UnlearnConfig):
    """FCS (winner #1, fanchuan; Deep Unlearn ``kgltop1``): the write-up's and Deep Unlearn's values.

    Attributes:
        stage1_epochs: passes over the forget set pushing its outputs to uniform (stage 1).
        epochs: adversarial epochs (stage 2), each a forget round and a retain round.
        batch_size: batch size of every loader.
        temperature: tau of the contrastive forget loss.
        stage1_lr, stage1_momentum: SGD of stage 1 (no weight decay).
        forget_lr, forget_momentum, eta_min: SGD of the forget rounds (no weight decay), cosine
            annealed per step to ``eta_min`` over all forget steps.
        retain_lr: learning rate of the retain rounds *per 64 examples* (multiplied by
            ``batch_size / 64``, as in the code).
        retain_momentum, retain_weight_decay: SGD of the retain rounds.
    """

    epoch_fields = ("stage1_epochs", "epochs")
    stage1_epochs: int = 1
    epochs: int = 8
    batch_size: int = 256
    temperature: float = 1.15
    stage1_lr: float = 5e-3
    stage1_momentum: float = 0.9
    forget_lr: float = 3e-4
    forget_momentum: float = 0.9
    eta_min: float = 1e-6
    retain_lr: float = 1e-3
    retain_momentum: float = 0.9
    retain_weight_decay: float = 1e-2

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("batch_size", "temperature", "stage1_lr", "forget_lr", "retain_lr"),
                            nonnegative=("stage1_epochs", "epochs", "eta_min", "retain_weight_decay"))


@register("fcs", config=FCSConfig, family="competition", uses=("retain", "forget"),
          summary="forget outputs to uniform, then contrastive forget rounds alternating with CE retain rounds",
          reference="NeurIPS 2023 unlearning challenge winner #1 (fanchuan, Kaggle discussion 458721); "
                    "Deep Unlearn FCS (kgltop1)")
def fcs(model: nn.Module, splits: RestrictedSplits, cfg: FCSConfig, *, device, seed: int) -> nn.Module:
    """Stage 1: minimise KL(uniform || p(.|x)) on the forget set. Stage 2, ``epochs`` times: a
    forget round over (forget batch, retain batch) pairs with :func:`contrastive_forget_loss`
    (retain logits detached), then one cross-entropy pass over the retain set. The three phases
    have their own SGD optimisers (separate momentum buffers), as in the code. The model stays in
    train mode throughout (batch-norm statistics are updated, also by forget batches).
    """
    forget = splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    retain = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed + 1, device=device)
    retain_pairs = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed + 2, device=device)
    opt1 = _loops.sgd(model, lr=cfg.stage1_lr, momentum=cfg.stage1_momentum)
    _loss_epochs(model, forget, epochs=cfg.stage1_epochs, optimizer=opt1, method="fcs stage 1",
                 loss_fn=lambda xb, yb: kl_to_uniform(model(xb)))
    opt_f = _loops.sgd(model, lr=cfg.forget_lr, momentum=cfg.forget_momentum)
    sched_f = _loops.cosine(opt_f, len(forget) * cfg.epochs, eta_min=cfg.eta_min)
    opt_r = _loops.sgd(model, lr=cfg.retain_lr * cfg.batch_size / 64, momentum=cfg.retain_momentum,
                       weight_decay=cfg.retain_weight_decay)
    model.train()
    for epoch in runtime.progress(range(cfg.epochs), desc="fcs", leave=False):
        for (xf, _), (xr, _) in zip(forget, _loops.cycle(retain_pairs)):
            with torch.no_grad():
                zr = model(xr)
            loss = contrastive_forget_loss(model(xf), zr, temperature=cfg.temperature)
            opt_f.zero_grad(set_to_none=True)
            loss.backward()
            opt_f.step()
            sched_f.step()
        _loops.check_finite(loss.detach(), method="fcs forget round", epoch=epoch)
        _loss_epochs(model, retain, epochs=1, optimizer=opt_r, method="fcs retain round",
                     loss_fn=lambda xb, yb: F.cross_entropy(model(xb), yb))
    return model


# --------------------------------------------------------------------------------------------
# Winner #2: Kookmin University (MSG)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MSGConfig(UnlearnConfig):
    """MSG, "masked small gradients" (winner #2, Kookmin; Deep Unlearn ``kgltop2``).

    Attributes:
        epochs: fine-tuning epochs on the retain set.
        init_rate: fraction of each conv weight tensor re-initialised.
        kept_grad_scale: factor on the gradient of the conv weights that were kept (1 on the
            re-initialised ones): the write-up's "1/10 of the learning rate".
        scale_weight_decay: apply ``kept_grad_scale`` to the weight decay of the kept weights
            too, making it exactly a 10x smaller learning rate (the write-up's intent). ``False``
            reproduces Deep Unlearn, whose SGD adds the weight decay after the scaling.
        selection: ``"layer"`` (Deep Unlearn: the smallest ``init_rate`` of each conv tensor) or
            ``"global"`` (the write-up: the smallest ``init_rate`` of all conv weights together).
        lr, momentum, weight_decay, batch_size: SGD of the fine-tuning (and the batch size of
            the gradient collection).
    """

    epochs: int = 5
    init_rate: float = 0.3
    kept_grad_scale: float = 0.1
    scale_weight_decay: bool = True
    selection: str = "layer"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size"),
                            nonnegative=("epochs", "weight_decay", "kept_grad_scale"), fraction=("init_rate",),
                            choices={"selection": ("layer", "global")})


def msg_gradients(model: nn.Module, x_retain: torch.Tensor, y_retain: torch.Tensor, x_forget: torch.Tensor,
                  y_forget: torch.Tensor, *, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Summed gradient of +CE on a random retain subset (as large as the forget set) and -CE on
    the forget set, for every conv weight, keyed by parameter name.

    The model is put in eval mode (batch-norm statistics are not updated by these passes; Deep
    Unlearn leaves the mode as it finds it). Batch losses are means; their gradients are summed
    over batches, as in the code.
    """
    device = next(model.parameters()).device
    n = min(len(y_forget), len(y_retain))
    pick = torch.randperm(len(y_retain), generator=generator)[:n]
    sub = TensorLoader(x_retain[pick], y_retain[pick], batch_size=batch_size, shuffle=True, generator=generator,
                       device=device)
    fgt = TensorLoader(x_forget, y_forget, batch_size=batch_size, shuffle=True, generator=generator, device=device)
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for loader, sign in ((sub, 1.0), (fgt, -1.0)):
        for xb, yb in loader:
            (sign * F.cross_entropy(model(xb), yb)).backward()
    names = {id(m.weight): f"{n}.weight" for n, m in conv_layers(model)}
    grads = {names[id(p)]: p.grad.detach().clone() for p in model.parameters() if id(p) in names}
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


def small_gradient_masks(grads: dict[str, torch.Tensor], *, fraction: float, selection: str = "layer"
                         ) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``fraction`` entries with the smallest ``|grad|``.

    ``selection="layer"`` takes ``round(fraction * numel)`` entries of each tensor;
    ``"global"`` takes ``round(fraction * total)`` over all tensors together. Ties are broken by
    ``torch.topk``.

    Example:
        >>> m = small_gradient_masks({"w": torch.tensor([3.0, -0.1, 2.0, 0.2])}, fraction=0.5)
        >>> m["w"].tolist()
        [False, True, False, True]
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if selection not in ("layer", "global"):
        raise ValueError(f"selection must be 'layer' or 'global', got {selection!r}")
    if not grads:
        return {}

    def smallest(score: torch.Tensor, k: int) -> torch.Tensor:
        mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
        if k > 0:
            mask[torch.topk(-score.flatten(), k).indices] = True
        return mask

    if selection == "layer":
        return {n: smallest(g.abs(), round(fraction * g.numel())).view_as(g) for n, g in grads.items()}
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    mask = smallest(flat, round(fraction * flat.numel()))
    out, start = {}, 0
    for n, g in grads.items():
        out[n] = mask[start:start + g.numel()].view_as(g)
        start += g.numel()
    return out


def reinit_kaiming_(weight: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Overwrite ``weight[mask]`` with Kaiming-normal draws (fan_out, ReLU), in place."""
    fresh = torch.empty(weight.shape)
    nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu", generator=generator)
    with torch.no_grad():
        weight[mask] = fresh.to(device=weight.device, dtype=weight.dtype)[mask]
    return weight


def msg_lr_factor(epoch: int, epochs: int) -> float:
    """MSG's per-epoch learning-rate factor: linear warm-up over ``(E + 1) // 2`` steps, then
    linear decay to 0 at step ``E + 1`` (Deep Unlearn's ``LinearAnnealingLR``).

    Example:
        >>> [round(msg_lr_factor(e, 5), 3) for e in range(5)]
        [0.333, 0.667, 1.0, 0.667, 0.333]
    """
    step, total = epoch + 1, epochs + 1
    warm = total // 2
    return step / warm if step <= warm else max(0.0, (total - step) / (total - warm))


@register("msg", config=MSGConfig, family="competition", uses=("retain", "forget"),
          summary="re-initialise the conv weights with the smallest forget/retain gradient; fine-tune the rest slowly",
          reference="NeurIPS 2023 unlearning challenge winner #2 (Kookmin University, Kaggle discussion 459200); "
                    "Deep Unlearn MSG (kgltop2)")
def msg(model: nn.Module, splits: RestrictedSplits, cfg: MSGConfig, *, device, seed: int) -> nn.Module:
    """1. :func:`msg_gradients`; 2. :func:`small_gradient_masks` of every conv weight;
    3. :func:`reinit_kaiming_` of the selected entries; 4. fine-tune on the retain set with CE
    and SGD, the gradient of kept conv entries multiplied by ``kept_grad_scale``, the learning
    rate following :func:`msg_lr_factor` per epoch.

    Deviations from Deep Unlearn: weight decay of kept entries is scaled too (see
    ``scale_weight_decay``); conv biases are kept (Deep Unlearn's replacement conv re-draws
    them, which matters only for convs with a bias, not for ResNet-18); gradients are collected
    in eval mode. On a model without conv layers, MSG reduces to the fine-tuning.
    """
    gen = torch.Generator().manual_seed(seed)
    grads = msg_gradients(model, *splits.xy("retain"), *splits.xy("forget"), batch_size=cfg.batch_size,
                          generator=gen)
    masks = small_gradient_masks(grads, fraction=cfg.init_rate, selection=cfg.selection)
    params = dict(model.named_parameters())
    scales = {}
    for name, mask in masks.items():
        reinit_kaiming_(params[name], mask, generator=gen)
        scales[name] = torch.where(mask, 1.0, cfg.kept_grad_scale).to(params[name])
    if cfg.epochs == 0:
        return model
    conv_w = [params[n] for n in scales]
    others = [p for n, p in params.items() if n not in scales]
    groups = [{"params": others}, {"params": conv_w, "weight_decay": 0.0 if cfg.scale_weight_decay else cfg.weight_decay}]
    opt = _loops.sgd([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                     weight_decay=cfg.weight_decay)

    def scale_gradients() -> None:
        for name, s in scales.items():
            p = params[name]
            if p.grad is None:
                continue
            if cfg.scale_weight_decay and cfg.weight_decay:
                p.grad.add_(p.detach(), alpha=cfg.weight_decay)
            p.grad.mul_(s)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: msg_lr_factor(e, cfg.epochs))
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    return _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, scheduler=sched, method="msg",
                            before_step=scale_gradients)


# --------------------------------------------------------------------------------------------
# Winner #3: Seifeddine Achour (CFW)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CFWConfig(UnlearnConfig):
    """CFW (winner #3, Seifeddine Achour; Deep Unlearn ``kgltop3``).

    Attributes:
        epochs: fine-tuning epochs on the retain set.
        sigma: std of the Gaussian noise added to the conv weights before fine-tuning.
        final_sigma: std of the "light variation" added after epoch ``epochs - 1`` (before the
            last epoch; none when ``epochs < 2``).
        scope: ``"first"`` conv only, or ``"all"`` conv layers. The write-up says "the conv
            weights"; Deep Unlearn's port, which copies the submission's perturbation function,
            perturbs the top-level children named "conv", which in a torchvision ResNet-18 is the
            stem alone (in ``small_cnn`` both convs). ``"first"`` is the default because it is
            what evidently ran: N(0, 0.6^2) noise on all twenty convs of a ResNet-18 (weights of
            std 0.02-0.06) leaves nothing that 4 epochs at lr 7e-4 could repair, and the entry
            scored well.
        class_weighting: ``"writeup"`` (weight 1 for class 0 and ``other_class_weight`` for every
            other class: the competition's hidden data had class 0 dominant and the forget set
            in classes 0-1), ``"balanced"`` (scikit-learn's inverse-frequency weights on the
            retain labels, Deep Unlearn's generalisation; all close to 1 on balanced data) or
            ``"none"``. On another data set, ``"writeup"`` singles out whatever class has label 0.
        other_class_weight: the write-up's 0.05.
        lr, momentum, weight_decay, batch_size: SGD with a cosine schedule over the epochs.
    """

    epochs: int = 4
    sigma: float = 0.6
    final_sigma: float = 0.005
    scope: str = "first"
    class_weighting: str = "writeup"
    other_class_weight: float = 0.05
    lr: float = 7e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size"),
                            nonnegative=("epochs", "sigma", "final_sigma", "other_class_weight", "weight_decay"),
                            choices={"scope": ("all", "first"), "class_weighting": ("writeup", "balanced", "none")})


def perturb_conv_weights_(model: nn.Module, *, std: float, scope: str = "first", generator: torch.Generator
                          ) -> list[str]:
    """Add N(0, std^2) noise to the weights of the first conv (``scope="first"``) or of every conv
    layer (``"all"``), in place; return the names of the perturbed layers."""
    if scope not in ("all", "first"):
        raise ValueError(f"scope must be 'all' or 'first', got {scope!r}")
    layers = conv_layers(model) if scope == "all" else [c for c in [first_conv(model)] if c is not None]
    with torch.no_grad():
        for _, m in layers:
            m.weight.add_(std * _randn(m.weight.shape, generator, m.weight))
    return [n for n, _ in layers]


def cfw_class_weights(labels: torch.Tensor, num_classes: int, *, mode: str, other: float = 0.05) -> torch.Tensor:
    """CFW's class weights ``[num_classes]`` (see :class:`CFWConfig`).

    Example:
        >>> cfw_class_weights(torch.tensor([0, 1, 1, 2]), 3, mode="writeup").tolist()
        [1.0, 0.05000000074505806, 0.05000000074505806]
        >>> [round(v, 4) for v in cfw_class_weights(torch.tensor([0, 1, 1, 2]), 3, mode="balanced").tolist()]
        [1.3333, 0.6667, 1.3333]
    """
    if mode == "none":
        return torch.ones(num_classes)
    if mode == "writeup":
        w = torch.full((num_classes,), float(other))
        w[0] = 1.0
        return w
    if mode != "balanced":
        raise ValueError(f"unknown class weighting {mode!r}; use 'writeup', 'balanced' or 'none'")
    # scikit-learn's "balanced" rule n / (k n_c) over the k classes present (0 for absent classes)
    counts = torch.bincount(labels.cpu(), minlength=num_classes).double()
    present = counts > 0
    w = torch.zeros(num_classes, dtype=torch.float64)
    w[present] = counts.sum() / (int(present.sum()) * counts[present])
    return w.float()


@register("cfw", config=CFWConfig, family="competition", uses=("retain",),
          summary="add Gaussian noise to the conv weights, fine-tune on the retain set with class weights",
          reference="NeurIPS 2023 unlearning challenge winner #3 (Seifeddine Achour, Kaggle discussion 459334); "
                    "Deep Unlearn CFW (kgltop3)")
def cfw(model: nn.Module, splits: RestrictedSplits, cfg: CFWConfig, *, device, seed: int) -> nn.Module:
    """Perturb (:func:`perturb_conv_weights_` with ``sigma``), fine-tune with the class-weighted
    CE ``mean_i w_{y_i} CE_i`` and a cosine schedule, perturbing again with ``final_sigma``
    before the last epoch.

    Deviation: Deep Unlearn's port (like, apparently, the original) multiplies the batch-mean
    CE by the batch-mean weight, which rescales the step of each batch instead of weighting its
    examples; here every example's CE is weighted, the evident intent.
    """
    gen = torch.Generator().manual_seed(seed)
    perturb_conv_weights_(model, std=cfg.sigma, scope=cfg.scope, generator=gen)
    x, y = splits.xy("retain")
    weights = cfw_class_weights(y, splits.data.num_classes, mode=cfg.class_weighting,
                                other=cfg.other_class_weight).to(device)
    loader = TensorLoader(x, y, batch_size=cfg.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(seed), device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def light_variation(epoch: int) -> None:
        if epoch == cfg.epochs - 2:
            perturb_conv_weights_(model, std=cfg.final_sigma, scope=cfg.scope, generator=gen)

    return _loss_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, scheduler=_loops.cosine(opt, cfg.epochs),
                        method="cfw", after_epoch=light_variation,
                        loss_fn=lambda xb, yb: (weights[yb] * F.cross_entropy(model(xb), yb, reduction="none")).mean())


# --------------------------------------------------------------------------------------------
# Winner #4: Sebastian Oleszko (PRMQ)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PRMQConfig(UnlearnConfig):
    """PRMQ, "prune, retrain, mask, quantize" (winner #4, Sebastian Oleszko; Deep Unlearn ``kgltop4``).

    Attributes:
        epochs: fine-tuning length in (possibly fractional) passes over the retain set; the run
            takes ``int(len(loader) * epochs)`` steps.
        prune_amount: fraction of all conv and linear weights and biases pruned (global L1).
        entropy_weight: weight of the MSE between the per-example predictive entropies of the
            fine-tuned and the original model.
        class_weight_power: class weights ``count_c ** -power`` of the CE (0: unweighted).
        quantize: round-trip the result through float16 at the end (Deep Unlearn's "quantize";
            the write-up does not mention it).
        lr, momentum, weight_decay, batch_size: SGD at a constant learning rate.
    """

    epochs: float = 3.2
    prune_amount: float = 0.99
    entropy_weight: float = 1.0
    class_weight_power: float = 0.1
    quantize: bool = False
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size"),
                            nonnegative=("epochs", "entropy_weight", "class_weight_power", "weight_decay"),
                            fraction=("prune_amount",))


def prune_and_reinit_(model: nn.Module, *, amount: float, generator: torch.Generator
                      ) -> dict[str, torch.Tensor]:
    """Global unstructured L1 pruning of every conv and linear weight and bias, then re-drawing
    the pruned entries from U(+-sqrt(1 / fan_in)) (PyTorch's default bound); in place.

    Returns:
        Parameter name -> boolean mask of the pruned (re-initialised) entries.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"prune amount must be in [0, 1], got {amount}")
    targets = [(f"{n}.{p}", m, p) for n, m in weight_layers(model) for p in ("weight", "bias")
               if getattr(m, p) is not None]
    if not targets:
        return {}
    prune.global_unstructured([(m, p) for _, m, p in targets], pruning_method=prune.L1Unstructured, amount=amount)
    masks = {}
    for name, m, p in targets:
        masks[name] = ~getattr(m, f"{p}_mask").bool()
        prune.remove(m, p)
        bound = math.sqrt(1.0 / m.weight[0].numel())
        param = getattr(m, p)
        fresh = torch.empty(param.shape).uniform_(-bound, bound, generator=generator)
        with torch.no_grad():
            param[masks[name]] = fresh.to(device=param.device, dtype=param.dtype)[masks[name]]
    return masks


@register("prmq", config=PRMQConfig, family="competition", uses=("retain",),
          summary="prune 99 % of the weights by magnitude and re-initialise them; fine-tune with CE + entropy matching",
          reference="NeurIPS 2023 unlearning challenge winner #4 (Sebastian Oleszko, Kaggle discussion 459148); "
                    "Deep Unlearn PRMQ (kgltop4)")
def prmq(model: nn.Module, splits: RestrictedSplits, cfg: PRMQConfig, *, device, seed: int) -> nn.Module:
    """Prune and re-initialise (:func:`prune_and_reinit_`), then minimise
    ``CE_w(f(x), y) + entropy_weight * (H(f(x)) - H(f_0(x)))^2`` on the retain set, where
    ``f_0`` is the original model (eval mode) and H the :func:`predictive_entropy`.

    Deviations: pruned biases are re-initialised like the weights (Deep Unlearn leaves them at
    0), and the run stops after exactly ``int(len(loader) * epochs)`` steps (one more in Deep
    Unlearn).
    """
    gen = torch.Generator().manual_seed(seed)
    teacher = _loops.frozen_copy(model)
    prune_and_reinit_(model, amount=cfg.prune_amount, generator=gen)
    x, y = splits.xy("retain")
    counts = torch.bincount(y, minlength=splits.data.num_classes).clamp(min=1).float()
    weights = (counts ** -cfg.class_weight_power).to(device)
    loader = TensorLoader(x, y, batch_size=cfg.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(seed), device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = int(len(loader) * cfg.epochs)
    model.train()
    total = torch.zeros((), device=device)
    for step, (xb, yb) in zip(runtime.progress(range(steps), desc="prmq", leave=False), _loops.cycle(loader)):
        with torch.no_grad():
            h0 = predictive_entropy(teacher(xb))
        out = model(xb)
        loss = F.cross_entropy(out, yb, weight=weights) + cfg.entropy_weight * F.mse_loss(predictive_entropy(out), h0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total = total + loss.detach()
        if (step + 1) % len(loader) == 0 or step + 1 == steps:
            _loops.check_finite(total, method="prmq", epoch=step // len(loader))
    if cfg.quantize:
        model.half().float()
    return model
