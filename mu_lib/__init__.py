"""mu_lib: the tested library behind *Unlearning, Hands-On*.

One concept per module; a concept with more than one paper or concern is a package whose
``__init__`` is its face (every public name), with one paper or algorithm per file behind it and
private machinery in ``_``-prefixed files. Data flows upwards through the layers below; a module
imports only from layers beneath it (an import-linter contract in ``pyproject.toml``, checked by
the test command)::

    book                          glue, tables, chapter execution, book.setup
    competition/                  rundir, units (local and Ray), run, report, evaluations
    explore | exercises/          the interactive figures | the auto-checked exercises' checks
    audit/                        bounds, epsilons (+ _rules, _intervals), score, calibrated
    unlearn/ | convex/ | dp | sisa   deep methods, tune | certified removal | DP-SGD | sharding
    metrics                       utility, forgetting and cost reports; the tuning objective
    mia/ | compute                attacks, LiRA, U-LiRA, RMIA, KLoM, memorization | compute notes
    train (+ _vmap_sgd)           fit, fit_many, evaluate
    models                        model factories by name
    data                          datasets and Splits
    runtime | viz | cost          profiles, Recipe, devices, seeds | plotting style | example passes
    fastpath                      precision, memory format and timing of every training loop

=================  =====================================================================
module             one concept
=================  =====================================================================
``fastpath``       one fast path for every loop: autocast dtype, gradient scaler, channels-last, timing
``runtime``        run profiles and the training ``Recipe``, device choice, seeding, progress bars
``cost``           cost in example passes (forward and backward), counted by the training loops
``data``           datasets and the ``Splits`` (retain, forget, validation, test)
``models``         model factories by name
``train``          ``fit``, ``evaluate``, ``fit_many`` (many seeds at once with ``torch.func``)
``compute``        a chapter's compute arithmetic: models x epochs x measured seconds per epoch
``mia``            ``attacks.py``, ``lira.py``, ``ulira.py``, ``rmia.py``, ``klom.py``, ``memorization.py``
``metrics``        the utility/forgetting/cost report; Deep Unlearn's tuning objective
``convex``         ``objective.py``, ``newton.py`` (Guo et al.), ``sekhari.py``, ``d2d.py``, ``calibration.py``
``dp``             DP-SGD from scratch and with Opacus; accounting
``sisa``           exact unlearning by sharding (SISA)
``unlearn``        the registry (``base.py``), one file per family, ``winners/``, ``tune.py``
``audit``          ``bounds.py``, ``epsilons.py``, ``calibrated.py``, ``permutation.py``, ``score.py``
``exercises``      the checks of the book's auto-checked exercises, with hints
``explore``        the book's interactive figures (sliders live, one static figure elsewhere)
``competition``    ``rundir.py``, ``units.py``, ``run.py``, ``report.py``, ``evaluations.py``
``viz``, ``book``  the plotting style; glue and helpers for the book
=================  =====================================================================

Nothing is downloaded at import time.

Example:
    >>> import mu_lib
    >>> mu_lib.__version__
    '0.1.0'
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mu_lib")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
