"""KLoM, the KL divergence of margins (Georgiev et al. 2024, as computed by EasyDUB): how far the
distribution of an example's margin over unlearned models is from that over retrained models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mu_lib.mia._populations import check_logits, check_pair

__all__ = ["margins", "binned_kl", "klom", "klom_quantiles"]


def margins(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """KLoM's margin ``z_y - log sum_{j != y} exp(z_j)`` of logits ``[..., K]`` with labels ``[...]``.

    It equals LiRA's logit-scaled confidence ``ln(p_y / (1 - p_y))``
    (:func:`mu_lib.mia.logit_scaled_confidence`), computed here with a log-sum-exp so that it
    stays exact for large logits.

    Example:
        >>> margins(np.array([[2.0, 0.0, 0.0]]), np.array([0])).round(4).tolist()  # 2 - ln 2
        [1.3069]
    """
    from scipy.special import logsumexp

    z, t = check_logits(logits, targets, min_classes=2)
    z = z.astype(np.float64)
    onehot = np.arange(z.shape[-1]) == t[..., None]
    true = np.where(onehot, z, 0.0).sum(axis=-1)
    return true - logsumexp(np.where(onehot, -np.inf, z), axis=-1)


def _histograms(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Counts ``[m, bins]`` of the columns of ``values [N, m]`` in the bins ``np.linspace(lo, hi, bins + 1)``.

    A value ``v`` falls in bin ``b`` when ``edge_b <= v < edge_{b+1}``; the column's maximum goes
    into the last bin, as in ``np.histogram``.
    """
    inner = np.linspace(lo, hi, bins + 1)[1:-1]  # [bins - 1, m]
    idx = (values[None] >= inner[:, None, :]).sum(axis=0)  # [N, m], in 0 .. bins - 1
    m = values.shape[1]
    counts = np.zeros((m, bins))
    np.add.at(counts, (np.broadcast_to(np.arange(m), values.shape), idx), 1.0)
    return counts


def _kl_columns(p: np.ndarray, q: np.ndarray, bins: int, eps: float, clip: float) -> np.ndarray:
    p = np.clip(p, -clip, clip)
    q = np.clip(q, -clip, clip)
    lo = np.minimum(p.min(axis=0), q.min(axis=0))
    hi = np.maximum(p.max(axis=0), q.max(axis=0))
    hi = np.where(lo >= hi, lo + 1.0, hi)  # all values equal: one bin of width 1/bins holds them
    pp = _histograms(p, lo, hi, bins) / p.shape[0]
    qq = _histograms(q, lo, hi, bins) / q.shape[0]
    q_safe = np.where(pp > 0, np.maximum(qq, eps), qq)
    terms = np.where(pp > 0, pp * np.log(np.where(pp > 0, pp, 1.0) / np.where(pp > 0, q_safe, 1.0)), 0.0)
    return terms.sum(axis=1)


def binned_kl(p_samples: np.ndarray, q_samples: np.ndarray, *, bins: int = 20, eps: float = 1e-5,
              clip: float = 100.0) -> float:
    """KL(P || Q) between two samples of a scalar, through shared equal-width histograms.

    As in EasyDUB's ``binned_kl_divergence``: both samples are clipped to ``[-clip, clip]``, the
    range from their joint minimum to their joint maximum is cut into ``bins`` equal bins, each
    sample's histogram is normalised, ``Q``'s probability is floored at ``eps`` wherever ``P``'s is
    positive (no renormalisation), and ``sum_b P_b ln(P_b / Q_b)`` is taken over the bins where
    ``P_b > 0``. **Deviation:** the reference bins with ``np.digitize``, which leaves a value equal
    to the joint maximum out of every bin (so one sample loses its largest value); here it goes
    into the last bin, as in ``np.histogram``.

    Args:
        p_samples: sample of ``P`` (1-D).
        q_samples: sample of ``Q`` (1-D).
        bins: number of bins.
        eps: floor of ``Q``'s bin probabilities where ``P`` has mass.
        clip: values are clipped to ``[-clip, clip]``.

    Returns:
        The divergence, >= 0 up to the ``eps`` floor.

    Example:
        >>> binned_kl(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        0.0
        >>> round(binned_kl(np.array([0.0, 0.0]), np.array([0.0, 1.0])), 4)  # ln 2
        0.6931
    """
    p = np.asarray(p_samples, dtype=np.float64)
    q = np.asarray(q_samples, dtype=np.float64)
    for name, a in (("p_samples", p), ("q_samples", q)):
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D sample, got shape {a.shape}")
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN")
    _check_options(bins, eps, clip)
    return float(_kl_columns(p[:, None], q[:, None], bins, eps, clip)[0])


def _check_options(bins: int, eps: float, clip: float) -> None:
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if not clip > 0:
        raise ValueError(f"clip must be positive, got {clip}")


def klom(unlearned: np.ndarray, retrained: np.ndarray, *, bins: int = 20, eps: float = 1e-5,
         clip: float = 100.0) -> np.ndarray:
    """KLoM of every example: KL(margins of the unlearned models || margins of the retrained models).

    Georgiev et al. (2024) score an unlearning method by the distribution, over examples, of the
    KL divergence between its models' margins and the margins of models retrained without the
    forget set ("oracles"); EasyDUB reports its 95th percentile on the forget, retain and
    validation sets (:func:`klom_quantiles`). Each example is one :func:`binned_kl` with the
    unlearned margins as ``P`` and the retrained ones as ``Q``. Lower is better; two samples of
    the same distribution give a positive value that shrinks as the number of models grows, so
    compare KLoM only at equal numbers of models (the retraining row of a run is its floor).

    Args:
        unlearned: margins of the unlearned models ``[N_u, m]`` (:func:`margins`).
        retrained: margins of the retrained models ``[N_r, m]``.
        bins, eps, clip: as in :func:`binned_kl`.

    Returns:
        ``[m]`` divergences.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = rng.normal(0, 1, (2000, 3))
        >>> same, moved = klom(rng.normal(0, 1, (2000, 3)), r), klom(rng.normal(3, 1, (2000, 3)), r)
        >>> bool(same.max() < 0.05), bool(moved.min() > 2)
        (True, True)
    """
    _check_options(bins, eps, clip)
    p = np.asarray(unlearned, dtype=np.float64)
    q = np.asarray(retrained, dtype=np.float64)
    if np.isnan(p).any() or np.isnan(q).any():
        raise ValueError("margins contain NaN")
    p, q = check_pair(np.clip(p, -clip, clip), np.clip(q, -clip, clip), min_models=1, same_count=False)
    return _kl_columns(p, q, int(bins), eps, clip)


def klom_quantiles(values: np.ndarray, quantiles: Sequence[float] = (0.5, 0.95)) -> dict[float, float]:
    """Quantiles of per-example KLoM values (EasyDUB reports the 95th percentile).

    Example:
        >>> klom_quantiles(np.arange(101.0), quantiles=(0.5, 0.95))
        {0.5: 50.0, 0.95: 95.0}
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or np.isnan(v).any():
        raise ValueError(f"values must be a non-empty 1-D array without NaN, got shape {v.shape}")
    out = {}
    for q in quantiles:
        if not 0 <= q <= 1:
            raise ValueError(f"quantiles must lie in [0, 1], got {q}")
        out[float(q)] = float(np.quantile(v, q))
    return out
