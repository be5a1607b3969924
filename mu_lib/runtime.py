"""Run profiles, device choice, seeding, Colab detection and the progress-bar switch.

One environment variable, ``MU_PROFILE``, picks the scale of every chapter and experiment:

=========  =========================================  ============================================
profile    where                                      data, model and precision
=========  =========================================  ============================================
smoke      the test suite                             same code paths, tiny sizes, fp32, seconds
gpu_smoke  the test suite                             the gpu profile's model family, augmentation
                                                      and bf16 autocast on generated CIFAR-shaped
                                                      data (``cifar10_like``), tiny, on the CPU
cpu        default without CUDA; the rendered book    packaged data (animal shapes, digits), fp32
gpu        default with CUDA (Colab)                  CIFAR-10, ResNet-9, mixed precision, minutes
full       research runs                              CIFAR-10, ResNet-18, hundreds of models, hours
=========  =========================================  ============================================

Chapters read their sizes from the :class:`Profile` returned by :func:`setup` and never branch on
hardware themselves. Sizes that only one chapter needs are chosen with :meth:`Profile.pick`.

Every training loop of the library (:func:`mu_lib.train.fit`, :func:`~mu_lib.train.fit_many`,
retraining, every unlearning method, the competition's models) runs through one
:class:`FastPath`: the profile's ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``)
decides the autocast dtype, the gradient scaler and the memory format, so that cost ratios compare
like with like. :func:`setup` makes the profile's precision the default of every loop;
library users pass ``precision=`` to a loop, or use :func:`use_precision`.

Example:
    >>> from mu_lib import runtime
    >>> prof = runtime.get_profile("smoke")
    >>> prof.dataset, prof.model
    ('animal_shapes', 'small_cnn')
    >>> prof.pick(smoke=4, cpu=32, gpu=128, full=512)
    4
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from mu_lib.fastpath import (
    PRECISIONS,
    FastPath,
    Stopwatch,
    default_precision,
    fast_path,
    set_default_precision,
    synchronize,
    use_precision,
)

__all__ = [
    "PRECISIONS",
    "FastPath",
    "fast_path",
    "default_precision",
    "use_precision",
    "Stopwatch",
    "synchronize",
    "SCHEDULES",
    "Recipe",
    "check_hparams",
    "PROFILES",
    "Profile",
    "get_profile",
    "setup",
    "seed_everything",
    "default_device",
    "resolve_device",
    "in_colab",
    "live_session",
    "progress_enabled",
    "progress",
]

T = TypeVar("T")

PROFILE_NAMES = ("smoke", "gpu_smoke", "cpu", "gpu", "full")

_FALLBACK = {"gpu_smoke": "smoke", "full": "gpu"}
"""Profiles a chapter need not name in :meth:`Profile.pick`: they take the value of this one."""


SCHEDULES = ("constant", "cosine", "linear", "onecycle")
"""Learning-rate schedules of :func:`mu_lib.train.fit` (see :func:`mu_lib.train.lr_at`)."""


def check_hparams(*, epochs: int, batch_size: int, lr: float, momentum: float, weight_decay: float,
                  schedule: str) -> None:
    """Validate the hyperparameters of a training run, naming the offending value.

    Example:
        >>> check_hparams(epochs=1, batch_size=0, lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine")
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be >= 1, got 0
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid schedules are {list(SCHEDULES)}")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained from scratch: the recipe of the original model and of retraining.

    It lives beside the profiles, which define one per scale; :mod:`mu_lib.train` re-exports it.

    Attributes:
        epochs: passes over the training data.
        batch_size: examples per step.
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        schedule: one of :data:`SCHEDULES`.
        augment: use the dataset's training augmentation (random crops and flips on CIFAR-10).

    Example:
        >>> Recipe(epochs=3, batch_size=64, lr=0.05).schedule
        'cosine'
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    augment: bool = False

    def __post_init__(self) -> None:
        check_hparams(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                      weight_decay=self.weight_decay, schedule=self.schedule)


@dataclass(frozen=True)
class Profile:
    """Sizes of one run profile.

    Attributes:
        name: ``"smoke"``, ``"gpu_smoke"``, ``"cpu"``, ``"gpu"`` or ``"full"``.
        dataset: image dataset of the deep-net chapters (see :func:`mu_lib.data.load_dataset`).
        model: model of the deep-net chapters (see :func:`mu_lib.models.make_model`).
        train_size: number of training examples (retain plus forget) drawn from the dataset;
            ``None`` keeps every training example.
        val_size: number of validation examples.
        test_size: number of test examples; ``None`` keeps the whole official test set.
        epochs: epochs used to train the original model.
        batch_size: mini-batch size for training the original model.
        lr: peak learning rate of SGD for the original model.
        weight_decay: weight decay of SGD for the original model.
        augment: whether training uses random-crop and flip augmentation.
        num_models: models per side in ensembles (shadow models, Monte-Carlo audits).
        convex_dataset: dataset of the convex chapters (``"digits"`` or ``"mnist"``).
        precision: the precision of every training loop (see :mod:`mu_lib.fastpath`): ``"fp32"``
            on the CPU profiles, ``"auto"`` (mixed precision on CUDA) on the GPU profiles,
            ``"bf16"`` for ``gpu_smoke`` (bfloat16 autocast on the CPU).
        device: the device chosen by :func:`setup` (``None`` before setup).
        seed: the seed given to :func:`setup` (``None`` before setup).
    """

    name: str
    dataset: str
    model: str
    train_size: int | None
    val_size: int
    test_size: int | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    augment: bool
    num_models: int
    convex_dataset: str
    precision: str = "fp32"
    device: str | None = None
    seed: int | None = None

    def pick(self, **values: Any) -> Any:
        """Return the value given for this profile's name.

        ``full`` falls back to ``gpu`` and ``gpu_smoke`` to ``smoke`` when they are not given, so
        that a chapter may name only the three profiles it was written for.

        Args:
            **values: one keyword per profile name: ``smoke``, ``cpu``, ``gpu`` and optionally
                ``full`` and ``gpu_smoke``.

        Returns:
            The value for this profile.

        Raises:
            ValueError: if a keyword is not a profile name or this profile's value is missing.

        Example:
            >>> get_profile("cpu").pick(smoke=2, cpu=16, gpu=64)
            16
            >>> get_profile("gpu_smoke").pick(smoke=2, cpu=16, gpu=64)
            2
        """
        unknown = sorted(set(values) - set(PROFILE_NAMES))
        if unknown:
            raise ValueError(f"unknown profile name(s) {unknown}; valid names are {list(PROFILE_NAMES)}")
        if self.name in values:
            return values[self.name]
        fallback = _FALLBACK.get(self.name)
        if fallback is not None and fallback in values:
            return values[fallback]
        raise ValueError(f"no value given for profile {self.name!r}; got values for {sorted(values)}")

    @property
    def recipe(self) -> Recipe:
        """The :class:`Recipe` of the original model (and of retraining) in this profile."""
        return Recipe(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=0.9,
                      weight_decay=self.weight_decay, schedule="cosine", augment=self.augment)

    @property
    def unlearn_epoch_budget(self) -> int:
        """Most epochs an unlearning method may spend: ceil(20 % of the original training epochs).

        This mirrors the Deep Unlearn search range (1 to ceil(0.2 x original epochs)) and the
        competition's cut-off of about 20 % of the retraining time.
        """
        return max(1, -(-self.epochs // 5))

    @property
    def torch_device(self) -> torch.device:
        """The chosen device as a :class:`torch.device` (CPU before :func:`setup`)."""
        return torch.device(self.device or "cpu")

    @property
    def fast_path(self) -> FastPath:
        """The :class:`~mu_lib.fastpath.FastPath` of this profile's precision on its device."""
        return fast_path(self.torch_device, precision=self.precision)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="animal_shapes", model="small_cnn", train_size=600, val_size=100,
        test_size=300, epochs=2, batch_size=64, lr=0.05, weight_decay=0.0, augment=False,
        num_models=4, convex_dataset="digits", precision="fp32",
    ),
    # The gpu profile's code path at test size: its model family (ResNet-9 at a sixteenth of the
    # width, so that a chapter still runs in seconds on two CPU cores), CIFAR-shaped generated
    # data with CIFAR-10's normalisation and augmentation, and mixed precision (bf16 autocast,
    # channels-last) on the CPU.
    "gpu_smoke": Profile(
        name="gpu_smoke", dataset="cifar10_like", model="resnet9_tiny", train_size=600, val_size=100,
        test_size=300, epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4, augment=True,
        num_models=4, convex_dataset="digits", precision="bf16",
    ),
    "cpu": Profile(
        name="cpu", dataset="animal_shapes", model="small_cnn", train_size=1200, val_size=500,
        test_size=2000, epochs=30, batch_size=64, lr=0.05, weight_decay=0.0, augment=False,
        num_models=32, convex_dataset="digits", precision="fp32",
    ),
    "gpu": Profile(
        name="gpu", dataset="cifar10", model="resnet9", train_size=None, val_size=5000,
        test_size=None, epochs=12, batch_size=256, lr=0.1, weight_decay=5e-4, augment=True,
        num_models=64, convex_dataset="mnist", precision="auto",
    ),
    "full": Profile(
        name="full", dataset="cifar10", model="resnet18", train_size=None, val_size=5000,
        test_size=None, epochs=182, batch_size=256, lr=0.1, weight_decay=5e-4, augment=True,
        num_models=512, convex_dataset="mnist", precision="auto",
    ),
}


def in_colab() -> bool:
    """Whether the code runs inside Google Colab."""
    return "google.colab" in sys.modules


def default_device() -> str:
    """``"cuda"`` when a CUDA device is visible, else ``"cpu"``; ``MU_DEVICE`` overrides both."""
    env = os.environ.get("MU_DEVICE")
    if env:
        return resolve_device(env).type
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn ``None``/a string/a device into a :class:`torch.device`, checking that it exists.

    Args:
        device: ``None`` for :func:`default_device`, or a device name such as ``"cpu"``/``"cuda"``.

    Returns:
        The device.

    Raises:
        ValueError: for an unknown device name, or ``"cuda"`` when CUDA is unavailable.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device(default_device())
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, or the one that ``MU_PROFILE`` or the hardware selects.

    Args:
        name: a profile name; ``None`` reads ``MU_PROFILE`` and otherwise picks ``gpu`` when CUDA
            is available and ``cpu`` when it is not.

    Raises:
        ValueError: for an unknown profile name.

    Example:
        >>> get_profile("cpu").dataset
        'animal_shapes'
    """
    if name is None:
        name = os.environ.get("MU_PROFILE") or ("gpu" if default_device() == "cuda" else "cpu")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles are {list(PROFILES)}")
    return PROFILES[name]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices included).

    Example:
        >>> seed_everything(0); a = torch.rand(1); seed_everything(0)
        >>> bool(torch.equal(a, torch.rand(1)))
        True
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def setup(*, chapter: str, seed: int = 0, profile: str | None = None, device: str | None = None,
          precision: str | None = None, verbose: bool = True) -> Profile:
    """Prepare a script: choose the profile and device, seed everything, set the precision of every
    training loop, print a banner.

    Chapters call :func:`mu_lib.book.setup`, which also applies the book's plotting style.

    Args:
        chapter: a short name of the chapter or script, printed in the banner.
        seed: the seed of every generator.
        profile: a profile name; ``None`` reads ``MU_PROFILE`` or follows the hardware.
        device: a device name; ``None`` reads ``MU_DEVICE`` or follows the hardware.
        precision: one of :data:`~mu_lib.fastpath.PRECISIONS`; ``None`` reads ``MU_PRECISION``,
            else takes the profile's. It becomes the default of every training loop.
        verbose: print the one-line banner.

    Returns:
        The profile, with ``device``, ``seed`` and ``precision`` filled in.

    Example:
        >>> prof = setup(chapter="doctest", profile="smoke", device="cpu", verbose=False)
        >>> prof.name, prof.device, prof.seed, prof.precision
        ('smoke', 'cpu', 0, 'fp32')
    """
    from mu_lib import __version__

    prof = get_profile(profile)
    dev = resolve_device(device)
    seed_everything(seed)
    chosen = precision or os.environ.get("MU_PRECISION") or prof.precision
    fp = fast_path(dev, precision=chosen)  # validates, and refuses bf16 on a GPU without it
    set_default_precision(fp.name)
    prof = dataclasses.replace(prof, device=dev.type, seed=int(seed), precision=fp.name)
    if verbose:
        print(f"mu_lib {__version__} | chapter {chapter} | profile {prof.name} | device {dev.type} | "
              f"precision {fp.name} | seed {seed} | torch {torch.__version__}")
    return prof


def live_session() -> bool:
    """Whether a person is watching: Colab, or a kernel started by a Jupyter server.

    False in book builds, in tests and in plain scripts. Chapters use it to show interactive
    widgets only where a front end can render them.

    Example:
        >>> isinstance(live_session(), bool)
        True
    """
    return in_colab() or bool(os.environ.get("JPY_SESSION_NAME"))


def progress_enabled() -> bool:
    """Whether long loops show progress bars.

    ``MU_PROGRESS=1``/``0`` decides when set. Otherwise bars are on in interactive sessions
    (Colab, a Jupyter server's kernel, a terminal) and off in book builds and tests, where a
    notebook is executed headless and a bar would only clutter the page.
    """
    env = os.environ.get("MU_PROGRESS")
    if env is not None and env.strip() != "":
        return env.strip().lower() not in {"0", "false", "no", "off"}
    if live_session():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[T], *, enabled: bool | None = None, **kwargs: Any) -> Iterator[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when progress bars are enabled.

    Args:
        iterable: what to iterate over.
        enabled: force bars on or off; ``None`` follows :func:`progress_enabled`.
        **kwargs: passed to ``tqdm`` (``desc``, ``total``, ``leave``, ...).

    Example:
        >>> list(progress(range(3), enabled=False))
        [0, 1, 2]
    """
    if enabled is None:
        enabled = progress_enabled()
    if not enabled:
        return iter(iterable)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, **kwargs))
