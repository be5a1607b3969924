"""The end-to-end scoring run of the NeurIPS 2023 Machine Unlearning Challenge, resumable and shardable.

The challenge scored an unlearning method by comparing **N models unlearned** from one original
model (one call of the method per model, different seeds) with **N models retrained from scratch**
on the retain set (Triantafillou et al. 2024). For every forget example, the two samples of N
logit-scaled confidences give an ε (how well the best threshold or interval test tells them
apart); the ε are turned into the forget quality ``F``, and

    final score = F x (mean retain acc. unlearned / retrained) x (mean test acc. unlearned / retrained).

Methods slower than a cut-off (about 20 % of the time of retraining one model) were rejected.

:class:`Competition` runs this with the library's pieces: :func:`mu_lib.train.train_on` for the
original model, :func:`mu_lib.train.fit_many` (vectorised over seeds) for the retrained models
when the model allows it, :mod:`mu_lib.unlearn` for the methods and :mod:`mu_lib.audit` for the
score. Its units of work are the models:

* ``original`` (trained once, or given) is stored as ``original.pt``;
* ``retrain/timing/<machine>.npz``: one plain :func:`~mu_lib.train.fit` of the retraining recipe,
  timed after a one-epoch warm-up with CUDA synchronised, once on every machine that takes part.
  This is the per-model retraining time of the cut-off, and an unlearned model is judged only
  against the reference of its own machine: the cut-off never compares times across machines.
  The retrained models themselves are trained many at a time with ``fit_many``, whose amortised
  time per model says nothing about what one retraining costs, so it is not used for the cut-off;
* ``retrain/00007.npz``: retrained model 7 (trained in fixed chunks of ``chunk_size`` models, so
  that a restarted or sharded run batches them exactly as an uninterrupted one);
* ``unlearn/<label>/00007.npz``: unlearned model 7 of a method.

Each file holds the model's forget-set confidences, its retain, forget and test accuracy and its
time. It is written atomically (a temporary file, then ``os.replace``), so a run killed at any
moment leaves finished files and nothing half-written; a restarted run skips the finished models.
``Competition(..., num_shards=k).run(shard=i)`` does only the models of shard ``i`` (the machines or
Colab sessions share the run directory), and :func:`merge` scores the union, naming any model still
missing. ``backend="ray"`` runs the same units as Ray tasks (Ray is optional), with one timing run
pinned to every node. A unit that fails is recorded (``failed/``) while the others go on, and
:class:`UnitsFailedError` names it at the end; calling ``run()`` again retries only what is missing.
Every model of a run takes the same fast path (:mod:`mu_lib.fastpath`): original, retrained and
unlearned models are trained in the run's precision, so that their times compare like with like.

Each result file also keeps the model's logits on the forget set, on a fixed subset of the retain
set and on (a subset of) the validation set, so that :func:`evaluate_run` can score every method
under evaluations that came after the competition (U-LiRA, RMIA, KLoM, Deep Unlearn's accuracy
gaps) without training a model, and compare their rankings (:meth:`RunEvaluation.kendall_tau`).

A manifest records a hash of everything that defines the run (data and splits, model, recipe,
number of models, seed) and the environment that must not change under it (code version, torch
version, device type, precision, shard plan); opening a run directory made for another
configuration raises an error naming the difference, and so does a method label reused with other
hyperparameters.

Example:
    >>> import tempfile
    >>> from mu_lib import data, train
    >>> s = data.make_splits("digits", forget_fraction=0.02, val_size=50, test_size=200, seed=0)
    >>> comp = Competition(s, model="logreg", recipe=train.Recipe(epochs=1, batch_size=256, lr=0.1),
    ...                    num_models=2, methods=["original"], run_dir=tempfile.mkdtemp())
    >>> comp.run()  # the timing run of this machine, 2 retrained and 2 unlearned models
    5
    >>> rep = comp.report()
    >>> rep["original"].forget_quality  # two identical copies of one model: maximally "peaky"
    0.0
"""

from __future__ import annotations

from mu_lib.competition.evaluations import CRITERIA, MethodEvaluation, RunEvaluation, evaluate_run
from mu_lib.competition.report import DEFAULT_CUTOFF, CompetitionReport, MethodScore, merge
from mu_lib.competition.run import EARLY_STOP_MARGIN, EARLY_STOP_RUNS, Competition, UnitsFailedError, run_competition
from mu_lib.competition.units import machine_id

__all__ = [
    "DEFAULT_CUTOFF", "EARLY_STOP_RUNS", "EARLY_STOP_MARGIN", "MethodScore", "CompetitionReport", "Competition",
    "merge", "run_competition", "UnitsFailedError", "machine_id", "CRITERIA", "MethodEvaluation", "RunEvaluation",
    "evaluate_run"
]
