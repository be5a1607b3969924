"""SISA training: exact unlearning by sharding (Bourtoule et al., IEEE S&P 2021).

SISA (Sharded, Isolated, Sliced, Aggregated) organises training so that forgetting is exact and
cheaper than retraining everything:

* **Sharded, isolated.** The training examples are split at random into ``shards`` disjoint
  shards, and one *constituent* model is trained on each shard and on nothing else.
* **Sliced.** Each shard is split into ``slices`` slices. A constituent trains in stages: stage
  ``r`` starts from the parameters left by stage ``r - 1`` and trains on slices ``0..r`` for
  ``slice_epochs(e, R)[r]`` epochs; the parameters are checkpointed after every stage.
* **Aggregated.** The ensemble predicts by a majority vote of its constituents' labels
  (``aggregation="vote"``, the paper's default) or by the mean of their softmax outputs
  (``"mean"``).

To forget some examples, :meth:`SISA.unlearn` deletes them from their slices and, for each shard
that held one, reloads the checkpoint taken before the earliest affected slice and repeats the
later stages on what remains. Every stage draws its randomness from a seed derived from
``(seed, shard, stage)``, so the result is, bit for bit, the ensemble that SISA trains on the
remaining data from the start (tested): exact unlearning at the cost of one shard's later stages.

Deviations from the paper's code (``cleverhans-lab/machine-unlearning``), all deliberate:

* each stage is one call of :func:`mu_lib.train.fit` with the given :class:`~mu_lib.runtime.Recipe`
  (SGD with momentum, its learning-rate schedule run over the stage's epochs, a fresh optimiser
  per stage); the official script keeps one optimiser (plain SGD or Adam, constant learning rate)
  across stages. A fresh optimiser makes the parameters alone a complete checkpoint;
* the stage epochs follow the official rule (an average of ``2e / (R + 1)`` epochs per stage,
  rounded as ``floor((r + 1) a) - floor(r a)``, computed exactly), so a shard costs about ``e`` epochs over the shard,
  as training a single model for ``e`` epochs on it would;
* shards and slices are near-equal parts (``numpy.array_split``) of one seeded permutation of the
  training ids (the official code gives the remainder to the last slice);
* checkpoints are kept in memory (the official code writes them to disk);
* a shard that loses every example drops out of the vote; a vote tie goes to the lowest class
  (as ``numpy.argmax`` in the official aggregation).

Example:
    >>> from mu_lib import data, runtime
    >>> ds = data.load_dataset("digits")
    >>> recipe = runtime.Recipe(epochs=5, batch_size=32, lr=0.1)
    >>> ens = SISA(shards=2, slices=2, model="logreg", recipe=recipe, seed=0)
    >>> ens = ens.fit(ds, np.arange(200))
    >>> [(shard, piece)] = ens.partition.locate([3])
    >>> ens.unlearn([3]).retrained == {shard: piece}
    True
    >>> 0.5 < ens.accuracy(ds.x[1000:1300], ds.y[1000:1300]) <= 1.0
    True
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mu_lib import cost, runtime
from mu_lib._validate import index_array
from mu_lib.data import Dataset
from mu_lib.models import make_model
from mu_lib.runtime import Recipe
from mu_lib.train import fit, predict_logits

__all__ = ["AGGREGATIONS", "Partition", "make_partition", "slice_epochs", "stage_seed", "forgetting_passes",
           "Forgetting", "SISA"]

AGGREGATIONS = ("vote", "mean")
"""How :class:`SISA` combines its constituents: majority vote of labels, or mean softmax."""


@dataclass(frozen=True)
class Partition:
    """Which training ids each constituent sees, in training order: ``slices[k][r]``.

    Example:
        >>> p = make_partition(np.arange(10), shards=2, slices=2, seed=0)
        >>> p.num_shards, p.num_slices, sorted(p.ids.tolist()) == list(range(10))
        (2, 2, True)
        >>> p.without([p.slices[0][1][0]]).sizes()[0]
        [3, 1]
    """

    slices: tuple[tuple[np.ndarray, ...], ...]

    @property
    def num_shards(self) -> int:
        return len(self.slices)

    @property
    def num_slices(self) -> int:
        return len(self.slices[0]) if self.slices else 0

    @property
    def ids(self) -> np.ndarray:
        """Every id of the partition, sorted."""
        return np.sort(np.concatenate([s for shard in self.slices for s in shard]))

    def shard(self, k: int) -> np.ndarray:
        """The ids of shard ``k``, in training order."""
        return np.concatenate(self.slices[k])

    def sizes(self) -> list[list[int]]:
        """``sizes()[k][r]``: examples in slice ``r`` of shard ``k``."""
        return [[int(s.size) for s in shard] for shard in self.slices]

    def locate(self, ids: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
        """``(shard, slice)`` of each id, in the given order.

        Raises:
            ValueError: for duplicated ids or ids that are not in the partition.
        """
        ids = index_array(ids, name="ids to locate", nonempty=True)
        where = {int(i): (k, r) for k, shard in enumerate(self.slices) for r, s in enumerate(shard) for i in s}
        missing = [int(i) for i in ids if int(i) not in where]
        if missing:
            raise ValueError(f"{len(missing)} id(s) are not in the partition (never trained on, or already "
                             f"forgotten), e.g. {missing[:5]}")
        return [where[int(i)] for i in ids]

    def without(self, ids: Sequence[int] | np.ndarray) -> Partition:
        """The same partition with ``ids`` deleted (every other id keeps its place and order)."""
        self.locate(ids)
        drop = np.asarray(ids)
        return Partition(tuple(tuple(s[~np.isin(s, drop)] for s in shard) for shard in self.slices))


def make_partition(ids: Sequence[int] | np.ndarray, *, shards: int, slices: int, seed: int = 0) -> Partition:
    """Split ``ids`` at random into ``shards`` near-equal shards of ``slices`` near-equal slices.

    Args:
        ids: distinct training ids (dataset indices).
        shards: number of shards (>= 1).
        slices: slices per shard (>= 1).
        seed: seed of the permutation.

    Raises:
        ValueError: for bad counts, or fewer ids than slices in all.

    Example:
        >>> make_partition(np.arange(7), shards=2, slices=2, seed=0).sizes()
        [[2, 2], [2, 1]]
    """
    ids = index_array(ids, name="training ids", nonempty=True)
    for name, v in (("shards", shards), ("slices", slices)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if ids.size < shards * slices:
        raise ValueError(f"{ids.size} training ids cannot fill {shards} shards x {slices} slices "
                         "(every slice needs at least one example)")
    perm = ids[np.random.default_rng(seed).permutation(ids.size)]
    return Partition(tuple(tuple(np.array_split(shard, slices)) for shard in np.array_split(perm, shards)))


def slice_epochs(epochs: int, slices: int) -> list[int]:
    """Epochs of each stage: the official rule, ``2e / (R + 1)`` epochs per stage on average.

    Stage ``r`` trains on ``r + 1`` of the ``R`` slices, so with equal slices the shard sees
    ``sum(epochs_r (r + 1) / R)`` = about ``e`` epochs' worth of examples, as one model trained
    for ``e`` epochs on the shard would.

    Example:
        >>> slice_epochs(30, 4), slice_epochs(30, 1), slice_epochs(2, 4)
        ([12, 12, 12, 12], [30], [0, 1, 1, 1])
        >>> slice_epochs(3, 2)
        [2, 2]
    """
    if epochs < 0 or slices < 1:
        raise ValueError(f"need epochs >= 0 and slices >= 1, got epochs={epochs}, slices={slices}")
    # floor((r + 1) a) - floor(r a) with a = 2e / (R + 1), in exact integer arithmetic
    return [2 * epochs * (r + 1) // (slices + 1) - 2 * epochs * r // (slices + 1) for r in range(slices)]


def stage_seed(seed: int, shard: int, stage: int) -> int:
    """The seed of one stage (``stage=-1``: the constituent's initialisation), from ``(seed, shard, stage)``.

    Example:
        >>> stage_seed(0, 1, 2) == stage_seed(0, 1, 2) != stage_seed(0, 2, 1)
        True
    """
    return int(np.random.SeedSequence([int(seed), int(shard), int(stage) + 1]).generate_state(1)[0] >> 1)


def forgetting_passes(partition: Partition, ids: Sequence[int] | np.ndarray, *, epochs: Sequence[int]) -> int:
    """Example passes that :meth:`SISA.unlearn` spends to forget ``ids``, computed without training.

    Every shard that holds one of ``ids`` repeats its stages from the earliest affected slice on,
    each stage on what remains of its slices (:func:`mu_lib.cost.training_passes` per stage).

    Args:
        partition: the partition before forgetting.
        ids: the ids to forget.
        epochs: epochs of each stage (:func:`slice_epochs`).

    Example:
        >>> p = Partition(((np.array([0, 1]), np.array([2, 3])), (np.array([4, 5]), np.array([6, 7]))))
        >>> forgetting_passes(p, [2], epochs=[1, 1])  # shard 0 repeats stage 1 on 3 examples
        9
        >>> forgetting_passes(p, [0, 6], epochs=[1, 1])  # 3 + 3 * 3 in shard 0, 3 * 3 in shard 1
        21
    """
    if len(epochs) != partition.num_slices:
        raise ValueError(f"epochs has {len(epochs)} stages, the partition {partition.num_slices} slices")
    first: dict[int, int] = {}
    for k, r in partition.locate(ids):
        first[k] = min(r, first.get(k, r))
    sizes = partition.without(ids).sizes()
    return sum(cost.training_passes(epochs=epochs[r], examples=sum(sizes[k][:r + 1]))
               for k, r0 in first.items() for r in range(r0, partition.num_slices))


@dataclass(frozen=True)
class Forgetting:
    """What one :meth:`SISA.unlearn` call did.

    Attributes:
        removed: number of ids forgotten.
        retrained: ``{shard: first stage repeated}`` for every shard that held a forgotten id.
        passes: example passes spent (:mod:`mu_lib.cost`).
        seconds: wall time.
    """

    removed: int
    retrained: dict[int, int]
    passes: int
    seconds: float


@dataclass
class SISA:
    """An ensemble trained with SISA; forgets exactly with :meth:`unlearn`.

    Args:
        shards: number of shards (constituent models).
        slices: slices per shard.
        model: a model name for :func:`mu_lib.models.make_model`, or ``factory(seed) -> nn.Module``.
        recipe: the training recipe; ``recipe.epochs`` is the ``e`` of :func:`slice_epochs`.
        aggregation: ``"vote"`` or ``"mean"`` (:data:`AGGREGATIONS`).
        seed: seed of the partition and of every stage.
        device: where to train and predict.
        progress: show progress bars.

    Attributes:
        partition: the current :class:`Partition` (``None`` before :meth:`fit`).
        models: the constituent models (``models[k]`` trained on shard ``k``).
        fit_passes: example passes of the last :meth:`fit`.
        last_passes: example passes of the last :meth:`fit` or :meth:`unlearn`.
    """

    shards: int
    slices: int
    model: str | Callable[[int], nn.Module]
    recipe: Recipe
    aggregation: str = "vote"
    seed: int = 0
    device: str | torch.device | None = None
    progress: bool | None = False
    partition: Partition | None = field(default=None, init=False)
    models: list[nn.Module] = field(default_factory=list, init=False)
    fit_passes: int = field(default=0, init=False)
    last_passes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        for name in ("shards", "slices"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; valid ones are {list(AGGREGATIONS)}")
        if not isinstance(self.recipe, Recipe):
            raise TypeError(f"recipe must be a mu_lib.runtime.Recipe, got {type(self.recipe).__name__}")
        self.epochs = slice_epochs(self.recipe.epochs, self.slices)
        self._checkpoints: list[list[dict[str, torch.Tensor]]] = []
        self._data: Dataset | None = None

    # -- training -------------------------------------------------------------------------------
    def fit(self, data: Dataset, ids: Sequence[int] | np.ndarray) -> SISA:
        """Partition ``ids`` (dataset indices) with :func:`make_partition` and train every shard."""
        ids = index_array(ids, name="training ids", n=len(data), nonempty=True)
        return self.fit_partition(data, make_partition(ids, shards=self.shards, slices=self.slices,
                                                       seed=self.seed))

    def fit_partition(self, data: Dataset, partition: Partition) -> SISA:
        """Train one constituent per shard of a given ``partition``, stage by stage, checkpointing."""
        if partition.num_shards != self.shards or partition.num_slices != self.slices:
            raise ValueError(f"the partition has {partition.num_shards} shards x {partition.num_slices} slices, "
                             f"this SISA has {self.shards} x {self.slices}")
        index_array(partition.ids, name="partition ids", n=len(data))
        self._data, self.partition = data, partition
        self.models, self._checkpoints = [], []
        with cost.count_passes() as counter:
            for k in runtime.progress(range(self.shards), enabled=self.progress, desc="SISA shards", leave=False):
                net = self._fresh(k)
                self.models.append(net)
                self._checkpoints.append([_snapshot(net)])
                for r in range(self.slices):
                    self._stage(k, r)
        self.fit_passes = self.last_passes = counter.passes
        return self

    def _fresh(self, k: int) -> nn.Module:
        s = stage_seed(self.seed, k, -1)
        if isinstance(self.model, str):
            ds = self._data
            return make_model(self.model, num_classes=ds.num_classes, in_channels=ds.in_channels,
                              image_size=ds.image_size, seed=s)
        return self.model(s)

    def _stage(self, k: int, r: int) -> None:
        """Train shard ``k``'s model from its checkpoint ``r`` (before stage ``r``) through stage ``r``."""
        net = self.models[k]
        ids = np.concatenate(self.partition.slices[k][:r + 1])
        if self.epochs[r] > 0 and ids.size > 0:
            idx = torch.from_numpy(ids)
            rc = self.recipe
            fit(net, self._data.x[idx], self._data.y[idx], epochs=self.epochs[r], batch_size=rc.batch_size,
                lr=rc.lr, momentum=rc.momentum, weight_decay=rc.weight_decay, schedule=rc.schedule,
                augment=self._data.augment if rc.augment else None, seed=stage_seed(self.seed, k, r),
                device=self.device, progress=False, desc=f"shard {k} stage {r}")
        self._checkpoints[k][r + 1:] = [_snapshot(net)]

    # -- unlearning -----------------------------------------------------------------------------
    def unlearn(self, ids: Sequence[int] | np.ndarray) -> Forgetting:
        """Forget ``ids`` exactly: delete them, and retrain each affected shard from the checkpoint
        before its earliest affected slice.

        Raises:
            RuntimeError: before :meth:`fit`.
            ValueError: for ids that are not (or no longer) in the training data.
        """
        if self.partition is None:
            raise RuntimeError("fit the ensemble before asking it to unlearn")
        ids = index_array(ids, name="ids to unlearn", nonempty=True)
        first: dict[int, int] = {}
        for k, r in self.partition.locate(ids):
            first[k] = min(r, first.get(k, r))
        start = time.perf_counter()
        self.partition = self.partition.without(ids)
        with cost.count_passes() as counter:
            for k in sorted(first):
                self.models[k].load_state_dict(self._checkpoints[k][first[k]])
                for r in range(first[k], self.slices):
                    self._stage(k, r)
        self.last_passes = counter.passes
        return Forgetting(removed=int(ids.size), retrained=dict(sorted(first.items())), passes=counter.passes,
                          seconds=time.perf_counter() - start)

    def copy(self) -> SISA:
        """An independent copy (models, checkpoints, partition) that shares the dataset, which
        SISA never modifies."""
        shared, self._data = self._data, None
        try:
            twin = copy.deepcopy(self)
        finally:
            self._data = shared
        twin._data = shared
        return twin

    def forgetting_passes(self, ids: Sequence[int] | np.ndarray) -> int:
        """What :meth:`unlearn` would spend on ``ids``, in example passes (nothing is trained)."""
        if self.partition is None:
            raise RuntimeError("the ensemble is not fitted")
        return forgetting_passes(self.partition, ids, epochs=self.epochs)

    # -- prediction -----------------------------------------------------------------------------
    @property
    def active(self) -> list[int]:
        """Shards that still hold training data (the ones that vote)."""
        if self.partition is None:
            raise RuntimeError("the ensemble is not fitted")
        return [k for k in range(self.shards) if self.partition.shard(k).size > 0]

    def shard_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every constituent, ``[shards, N, K]`` (inactive shards included)."""
        if not self.models:
            raise RuntimeError("the ensemble is not fitted")
        return torch.stack([predict_logits(net, x, device=self.device) for net in self.models])

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Aggregated predicted labels ``[N]``."""
        logits = self.shard_logits(x)[self.active]
        if self.aggregation == "mean":
            return logits.softmax(-1).mean(0).argmax(-1).numpy()
        votes = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).sum(0)
        return votes.argmax(-1).numpy()

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of ``(x, y)`` the aggregated ensemble gets right."""
        return float((self.predict(x) == y.cpu().numpy()).mean())


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}
