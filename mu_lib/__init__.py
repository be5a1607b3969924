"""mu_lib: the tested library behind *Unlearning, Hands-On*.

One concept per module; a concept with more than one paper or concern is a package whose
``__init__`` is its face (every public name), with one paper or algorithm per file behind it and
private machinery in ``_``-prefixed files. Data flows upwards through the layers below; a module
imports only from layers beneath it (an import-linter contract in ``pyproject.toml``, checked by
the test command)::

    book                          glue, tables, chapter execution, book.setup
    competition/                  rundir, units (local and Ray), run, report
    audit/                        bounds, epsilons (+ _rules), score
    unlearn/ | convex/ | dp       methods behind one registry | certified removal | DP-SGD
    metrics                       utility, forgetting and cost reports; the tuning objective
    mia/                          attacks (loss threshold, starting kit), lira
    train                         fit, fit_many, evaluate
    models                        model factories by name
    data                          datasets and Splits
    runtime | viz                 profiles, Recipe, devices, seeds, progress | plotting style

=================  =====================================================================
module             one concept
=================  =====================================================================
``runtime``        run profiles and the training ``Recipe``, device choice, seeding, progress bars
``data``           datasets and the ``Splits`` (retain, forget, validation, test)
``models``         model factories by name
``train``          ``fit``, ``evaluate``, ``fit_many`` (many seeds at once with ``torch.func``)
``mia``            ``attacks.py`` (ROC, loss threshold, the starting kit), ``lira.py`` (LiRA)
``metrics``        the utility/forgetting/cost report; Deep Unlearn's tuning objective
``convex``         ``objective.py``, ``newton.py`` (Guo et al.), ``sekhari.py``, ``d2d.py``, ``tasks.py``
``dp``             DP-SGD from scratch and with Opacus; accounting
``unlearn``        the registry (``base.py``), one file per family, ``winners/`` one file per recipe
``audit``          ``bounds.py``, ``epsilons.py`` (the competition's ε, calibrated), ``score.py``
``competition``    ``rundir.py``, ``units.py``, ``run.py``, ``report.py``
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
