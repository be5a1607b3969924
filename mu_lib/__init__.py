"""mu_lib: the tested library behind *Unlearning, Hands-On*.

Modules, in the order data flows through them: :mod:`~mu_lib.runtime` (profiles, devices, seeds),
:mod:`~mu_lib.data`, :mod:`~mu_lib.models`, :mod:`~mu_lib.train`, :mod:`~mu_lib.mia`; the
plotting style in :mod:`~mu_lib.viz` and book helpers in :mod:`~mu_lib.book`.

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
