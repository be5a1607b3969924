"""Losses shared by several methods (private)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
