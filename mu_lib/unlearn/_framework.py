"""SalUn's framework (the code of Fan et al. 2024 and of Unlearn-Sparse): the settings shared by the
methods it runs here (random labels, SalUn, l1-sparse, boundary shrink and expanding).

Its optimiser is :class:`~mu_lib.unlearn.base.SGDConfig`'s default (SGD, momentum 0.9, weight decay
5e-4, batches of 256, 10 epochs); what it adds is training on the dataset's augmented examples,
as its loaders use the training transform.
"""

from __future__ import annotations

from dataclasses import dataclass

from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import SGDConfig


@dataclass(frozen=True)
class SalUnFrameworkConfig(SGDConfig):
    """:class:`~mu_lib.unlearn.base.SGDConfig` with the framework's augmentation switch.

    Attributes:
        augment: draw the batches with the dataset's training augmentation, as SalUn's framework
            does (the book turns it on in the ``gpu`` profile).
    """

    augment: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, boolean=("augment",))
