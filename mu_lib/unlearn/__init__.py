"""Deep-network unlearning methods behind one API.

Every method is registered by name; :func:`get` returns a callable
``(model, splits, *, device, seed) -> nn.Module`` configured with the reference hyperparameters
(a frozen dataclass) and any overrides. :func:`available` lists the names in the book's order:

=====================  ==========================================================================
file                   methods
=====================  ==========================================================================
``reference.py``       ``retrain`` (the gold standard), ``original`` (do nothing), ``finetune``
``gradient.py``        ``gradient_ascent``, ``neggrad_plus``
``relabel.py``         ``random_labels``, ``salun``, ``boundary_shrink``
``sparse.py``          ``l1_sparse``
``partial.py``         ``cf_k``, ``eu_k``
``dampen.py``          ``ssd``, ``fisher``
``distill.py``         ``scrub``, ``bad_teacher``
``winners/``           the NeurIPS 2023 competition's winners, one file each, by rank
=====================  ==========================================================================

``base.py`` holds the protocol (:class:`Method`, :class:`RestrictedSplits`, the registry and the
config bases); ``compare.py`` runs several methods from one original model. Private machinery
(training loops, the layer vocabulary, shared losses) lives in ``_``-prefixed files.

Example:
    >>> from mu_lib import unlearn
    >>> unlearn.available()[:3]
    ['retrain', 'original', 'finetune']
    >>> unlearn.get("finetune", epochs=2).config.epochs
    2
"""

from mu_lib.unlearn.base import (
                                 Method,
                                 MethodInfo,
                                 RestrictedSplits,
                                 SGDConfig,
                                 UnlearnConfig,
                                 available,
                                 get,
                                 info,
                                 register,
)

# The method modules register their methods when imported: in this order, the book's order, which
# available() returns. (isort: off keeps the import sorter from alphabetising them.)
# isort: off
from mu_lib.unlearn import reference
from mu_lib.unlearn import gradient
from mu_lib.unlearn import relabel
from mu_lib.unlearn import sparse
from mu_lib.unlearn import partial
from mu_lib.unlearn import dampen
from mu_lib.unlearn import distill
from mu_lib.unlearn import winners
# isort: on
from mu_lib.unlearn.compare import compare_methods

__all__ = ["Method", "MethodInfo", "RestrictedSplits", "SGDConfig", "UnlearnConfig", "available", "compare_methods",
           "get", "info", "register", "reference", "gradient", "relabel", "sparse", "partial", "dampen", "distill",
           "winners"]
