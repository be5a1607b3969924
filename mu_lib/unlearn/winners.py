"""The winning recipes of the NeurIPS 2023 Machine Unlearning Challenge (family ``"competition"``).

Eight methods, named as in the Deep Unlearn benchmark where it ports them (Cadet et al. 2024,
``kgltop1..7``), ranked as the competition ranked its winners:

======  ==============  ===================================================================
rank    name            what it does
======  ==============  ===================================================================
1       ``fcs``         push forget outputs to uniform, then alternate a contrastive forget
                        round and a cross-entropy retain round (fanchuan)
2       ``msg``         re-initialise the 30 % conv weights with the smallest forget/retain
                        gradient, fine-tune with 10x smaller steps on the kept ones (Kookmin)
3       ``cfw``         add N(0, 0.6^2) noise to the (first) conv weights, fine-tune with
                        class weights (Seifeddine Achour)
4       ``prmq``        prune 99 % of the weights by magnitude, re-initialise them, fine-tune
                        with cross-entropy plus an entropy-matching term (Sebastian Oleszko)
5       ``ct``          transpose every conv kernel, fine-tune (toshi_k)
6       ``kde``         reset the first conv and the classifier, distil the original model on
                        the validation set, fine-tune with CE + distillation (DUTH "Euclid")
7       ``rni``         reset the classifier, inject noise into random layers, fine-tune
                        (sunkroos)
8       ``reinit_mse``  re-initialise random layers, "remember" by matching the original
                        outputs on noisy retain images; never reads the forget set (Ahn et al.)
======  ==============  ===================================================================

The recipes were written for one hidden data set (faces, 10 imbalanced age classes, a
torchvision ResNet-18) and a hard time limit of about 20 % of retraining. Their defaults are the
write-ups' values, or Deep Unlearn's where the write-up is silent; every epoch-like field is
listed in the config's ``epoch_fields`` so that :meth:`UnlearnConfig.with_epoch_budget` scales
them together.

**Architecture vocabulary.** The recipes name layers of a torchvision ResNet-18 (``conv1``,
``fc``, ``bn``...). Here they are defined by module type so that every method runs on any model
of :mod:`mu_lib.models`:

* *conv layers*: every ``nn.Conv2d``, in registration order;
* *first conv*: the first conv layer (``small_cnn``: ``conv1``; ``resnet18``: the stem ``conv1``);
* *classifier* ("last fc"): the last ``nn.Linear`` in registration order (``fc`` in both);
* *weight layers*: every ``nn.Conv2d`` and ``nn.Linear`` (weight and bias together), i.e. the
  "layers" that methods choose at random; normalisation layers are never weight layers;
* *projection shortcut*: a 1x1 convolution (in ResNet-18 exactly ``layerK.0.downsample.0``).

Random draws (noise, re-initialisation, choices of layers) come from a CPU generator seeded
with the call's ``seed`` and are then moved to the device, so that they do not depend on it.

This module holds what the eight methods share: the vocabulary above, layer resets, losses and
a training loop with an arbitrary loss. The methods are in :mod:`mu_lib.unlearn.winners_1to4`
(``fcs``, ``msg``, ``cfw``, ``prmq``) and :mod:`mu_lib.unlearn.winners_5to8` (``ct``, ``kde``,
``rni``, ``reinit_mse``). The chapter *The competition's winning recipes*
(``book/competition-methods.ipynb``) explains them and compares them with retraining.

Example:
    >>> from mu_lib import unlearn
    >>> sorted(unlearn.available("competition"))
    ['cfw', 'ct', 'fcs', 'kde', 'msg', 'prmq', 'reinit_mse', 'rni']
    >>> unlearn.get("msg").config.init_rate
    0.3
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import runtime
from mu_lib.unlearn import _loops

__all__ = ["NORM_TYPES", "conv_layers", "weight_layers", "first_conv", "classifier", "is_projection_shortcut",
           "reset_layer_", "kl_to_uniform", "contrastive_forget_loss", "predictive_entropy", "kl_distillation"]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


# --------------------------------------------------------------------------------------------
# Architecture vocabulary
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(uniform || softmax(logits)) = -log K - mean_k log p_k (FCS stage 1).

    Example:
        >>> float(kl_to_uniform(torch.zeros(4, 10)))
        0.0
        >>> import math
        >>> z = torch.tensor([[2.0, 0.0]])
        >>> round(float(kl_to_uniform(z)), 4) == round(-math.log(2) - float(z.log_softmax(1).mean()), 4)
        True
    """
    logp = F.log_softmax(logits, dim=1)
    return F.kl_div(logp, torch.full_like(logp, 1.0 / logits.shape[1]), reduction="batchmean")


def contrastive_forget_loss(z_forget: torch.Tensor, z_retain: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """FCS's forget-round loss: mean over pairs (i, j) of -log softmax_j(z_f,i . z_r,j / tau).

    With equal weight on every retain sample j, the loss is smallest when each forget sample is
    equally similar to all retain samples of the batch, so that none of them stands out as its
    neighbour. ``z_retain`` should be detached.
    """
    sim = z_forget @ z_retain.T / temperature
    return -F.log_softmax(sim, dim=1).mean()


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-example entropy of softmax(logits), ``[N]`` (nats).

    Example:
        >>> import math
        >>> round(float(predictive_entropy(torch.zeros(1, 4))[0]), 4) == round(math.log(4), 4)
        True
    """
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def kl_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float
                    ) -> torch.Tensor:
    """Batch-mean KL(softmax(t / T) || softmax(s / T)), without the T^2 factor (as KDE uses it)."""
    return F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")


# --------------------------------------------------------------------------------------------
# A training loop with an arbitrary loss
# --------------------------------------------------------------------------------------------

def _loss_epochs(model: nn.Module, loader: Iterable, *, epochs: int, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], method: str,
                 scheduler=None, before_step: Callable[[], None] | None = None,
                 after_epoch: Callable[[int], None] | None = None) -> nn.Module:
    """Minimise ``loss_fn(xb, yb)`` over ``loader`` for ``epochs`` epochs in train mode."""
    model.train()
    for epoch in runtime.progress(range(epochs), desc=method, leave=False):
        total = None
        for xb, yb in loader:
            loss = loss_fn(xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            total = loss.detach() if total is None else total + loss.detach()
        if total is not None:
            _loops.check_finite(total, method=method, epoch=epoch)
        if scheduler is not None:
            scheduler.step()
        if after_epoch is not None:
            after_epoch(epoch)
    return model
