"""Deep-network unlearning methods behind one API.

Every method is registered by name; :func:`get` returns a callable
``(model, splits, *, device, seed) -> nn.Module`` configured with the reference hyperparameters
(a frozen dataclass) and any overrides. :func:`available` lists the names.

Example:
    >>> from mu_lib import unlearn
    >>> "finetune" in unlearn.available()
    True
    >>> unlearn.get("finetune", epochs=2).config.epochs
    2
"""

from mu_lib.unlearn.base import Method, MethodInfo, RestrictedSplits, UnlearnConfig, available, get, info, register

__all__ = ["Method", "MethodInfo", "RestrictedSplits", "UnlearnConfig", "available", "get", "info", "register"]
