"""Deep-network unlearning methods behind one API.

Every method is registered by name; :func:`get` returns a callable
``(model, splits, *, device, seed) -> nn.Module`` configured with the reference hyperparameters
(a frozen dataclass) and any overrides. :func:`available` lists the names in the book's order:

=====================  ==========================================================================
file                   methods
=====================  ==========================================================================
``reference.py``       ``retrain`` (the gold standard), ``original`` (do nothing), ``finetune``
``gradient.py``        ``gradient_ascent``, ``neggrad_plus``
``sfron.py``           ``sfr_on`` (adaptive, saliency-masked ascent interleaved with descent)
``relabel.py``         ``random_labels``, ``salun``
``boundary.py``        ``boundary_shrink``, ``boundary_expanding``
``sparse.py``          ``l1_sparse``
``partial.py``         ``cf_k``, ``eu_k``
``influence.py``       ``influence`` (IU: one WoodFisher Newton step)
``dampen.py``          ``ssd``, ``fisher``
``distill.py``         ``scrub``, ``bad_teacher``
``scar.py``            ``scar`` (Mahalanobis forgetting with distillation)
``unsir.py``           ``unsir`` (error-maximising noise, impair, repair)
``amnesiac.py``        ``amnesiac`` (roll back recorded training updates)
``winners/``           the NeurIPS 2023 competition's winners, one file each, by rank
=====================  ==========================================================================

The order is the book's: the reference points; the gradient-based methods (ascent, then SFR-on,
which refines it); relabelling and the decision-boundary methods; sparsity and partial
retraining; the one-shot parameter edits (influence, dampening); distillation (SCRUB, Bad
Teacher, SCAR); noise-based impair-repair (UNSIR); the rollback of training-time records
(Amnesiac); and the competition's winners.

``base.py`` holds the protocol (:class:`Method`, :class:`RestrictedSplits`, the registry, the
config bases and the epoch-budget rule); ``compare.py`` runs several methods from one original
model; ``tune.py`` searches a method's hyperparameters without a retrained model (:func:`tune`). Private machinery
(training loops, the layer vocabulary, shared losses) lives in ``_``-prefixed files.

Example:
    >>> from mu_lib import unlearn
    >>> unlearn.available()[:3]
    ['retrain', 'original', 'finetune']
    >>> unlearn.get("finetune", epochs=2).config.epochs
    2
"""

from mu_lib.unlearn.base import (
                                 NOMINAL_FRACTIONS,
                                 Method,
                                 MethodInfo,
                                 RestrictedSplits,
                                 SGDConfig,
                                 UnlearnConfig,
                                 available,
                                 check_model_fits,
                                 get,
                                 info,
                                 register,
)

# The method modules register their methods when imported: in this order, the book's order, which
# available() returns. (isort: off keeps the import sorter from alphabetising them.)
# isort: off
from mu_lib.unlearn import reference
from mu_lib.unlearn import gradient
from mu_lib.unlearn import sfron
from mu_lib.unlearn import relabel
from mu_lib.unlearn import boundary
from mu_lib.unlearn import sparse
from mu_lib.unlearn import partial
from mu_lib.unlearn import influence
from mu_lib.unlearn import dampen
from mu_lib.unlearn import distill
from mu_lib.unlearn import scar
from mu_lib.unlearn import unsir
from mu_lib.unlearn import amnesiac
from mu_lib.unlearn import winners
# isort: on
from mu_lib.unlearn.compare import compare_methods
from mu_lib.unlearn.tune import TuneResult, search_space, tune

__all__ = ["NOMINAL_FRACTIONS", "Method", "MethodInfo", "RestrictedSplits", "SGDConfig", "UnlearnConfig", "TuneResult",
           "available", "check_model_fits", "compare_methods", "get", "info", "register", "search_space", "tune",
           "reference", "gradient", "sfron", "relabel", "boundary", "sparse", "partial", "influence", "dampen",
           "distill", "scar", "unsir", "amnesiac", "winners"]
