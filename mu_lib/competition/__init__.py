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
* ``retrain/timing.npz``: one plain :func:`~mu_lib.train.fit` of the retraining recipe, timed after
  a one-epoch warm-up. This is the per-model retraining time of the cut-off. The retrained models
  themselves are trained many at a time with ``fit_many``, whose amortised time per model says
  nothing about what one retraining costs, so it is not used for the cut-off;
* ``retrain/00007.npz``: retrained model 7 (trained in fixed chunks of ``chunk_size`` models, so
  that a restarted or sharded run batches them exactly as an uninterrupted one);
* ``unlearn/<label>/00007.npz``: unlearned model 7 of a method.

Each file holds the model's forget-set confidences, its retain, forget and test accuracy and its
time. It is written atomically (a temporary file, then ``os.replace``), so a run killed at any
moment leaves finished files and nothing half-written; a restarted run skips the finished models.
``run(shard=i, num_shards=k)`` does only the models of shard ``i`` (the machines or Colab sessions
share the run directory), and :func:`merge` scores the union, naming any model still missing.
``backend="ray"`` runs the same units as Ray tasks (Ray is optional).

A manifest records a hash of everything that defines the run (data and splits, model, recipe,
number of models, seed); opening a run directory made for another configuration raises an error,
and so does a method label reused with other hyperparameters.

Example:
    >>> import tempfile
    >>> from mu_lib import data, train
    >>> s = data.make_splits("digits", forget_fraction=0.02, val_size=50, test_size=200, seed=0)
    >>> comp = Competition(s, model="logreg", recipe=train.Recipe(epochs=1, batch_size=256, lr=0.1),
    ...                    num_models=2, methods=["original"], run_dir=tempfile.mkdtemp())
    >>> comp.run()  # the timing run, 2 retrained and 2 unlearned models
    5
    >>> rep = comp.report()
    >>> rep["original"].forget_quality  # two identical copies of one model: maximally "peaky"
    0.0
"""

from __future__ import annotations

from mu_lib.competition.report import DEFAULT_CUTOFF, CompetitionReport, MethodScore, merge
from mu_lib.competition.run import EARLY_STOP_MARGIN, EARLY_STOP_RUNS, Competition, run_competition

__all__ = [
    "DEFAULT_CUTOFF", "EARLY_STOP_RUNS", "EARLY_STOP_MARGIN", "MethodScore", "CompetitionReport", "Competition",
    "merge", "run_competition"
]
