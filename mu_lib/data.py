"""Datasets and the :class:`Splits` of a training set into retain, forget, validation and test.

Every dataset is held in memory as one float tensor of images and one tensor of labels, which
makes mini-batching a matter of indexing (:class:`TensorLoader`) and keeps training fast on both
CPU and GPU. These datasets are built in:

* ``digits``: scikit-learn's 1,797 handwritten digits, 8x8 (ships with scikit-learn);
* ``animal_shapes``: 10,000 animal silhouettes, 28x28, 10 balanced classes (ships with the
  ``animal-shape-mnist`` package; read directly from its files);
* ``cifar10`` and ``mnist``: downloaded by torchvision into a cache directory on first use. The
  download happens only when one of these is loaded, never at import time, and fails with a
  clear :class:`DatasetUnavailableError` when offline;
* ``cifar10_like``: 6,000 generated 3x32x32 images in 10 classes (5,000 for training, an official
  test split of 1,000), with CIFAR-10's normalisation and augmentation; it stands in for CIFAR-10
  where nothing may be downloaded (the ``gpu_smoke`` profile of the tests).

A dataset is moved to a device once (:meth:`Dataset.on`) and indexed there: on a GPU, batches
never cross from the host.

Example:
    >>> from mu_lib import data
    >>> ds = data.load_dataset("digits")
    >>> splits = data.make_splits(ds, forget="random", forget_fraction=0.1, val_size=100,
    ...                           test_size=300, seed=0)
    >>> len(splits.forget), len(splits.retain), len(splits.val), len(splits.test)
    (140, 1257, 100, 300)
    >>> x, y = splits.xy("forget")
    >>> tuple(x.shape), tuple(y.shape)
    ((140, 1, 8, 8), (140,))
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mu_lib._validate import index_array

__all__ = [
    "Dataset",
    "DatasetUnavailableError",
    "Splits",
    "TensorLoader",
    "PARTS",
    "MEMORIZATION_LEVELS",
    "available",
    "cache_dir",
    "load_dataset",
    "make_splits",
    "mislabel",
    "check_disjoint",
]

PARTS = ("retain", "forget", "val", "test", "train")
Part = Literal["retain", "forget", "val", "test", "train"]


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be loaded (typically: offline, and not in the cache directory)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image-classification dataset held in memory.

    Attributes:
        name: the registry name.
        x: float32 images ``[N, C, H, W]``, standardised with ``mean`` and ``std``.
        y: int64 labels ``[N]`` in ``0 .. num_classes - 1``.
        classes: class names.
        mean: per-channel mean that was subtracted (in [0, 1] pixel units).
        std: per-channel standard deviation that was divided out.
        official_test: indices of the dataset's official test split, or ``None`` if it has none.
        augment: the augmentation suited to training on this data (``"crop_flip"`` or ``None``).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    official_test: np.ndarray | None = None
    augment: str | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"x must have shape [N, C, H, W], got {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"y must have shape [{self.x.shape[0]}], got {tuple(self.y.shape)}")
        if len(self.mean) != self.x.shape[1] or len(self.std) != self.x.shape[1]:
            raise ValueError("mean and std need one entry per channel")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x.shape[-1])

    def __repr__(self) -> str:
        test = "none" if self.official_test is None else str(len(self.official_test))
        return (f"Dataset({self.name!r}, n={len(self)}, shape={tuple(self.x.shape[1:])}, "
                f"classes={self.num_classes}, official_test={test})")

    def on(self, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels on ``device``: copied there on the first call, then cached.

        Example:
            >>> ds = load_dataset("digits")
            >>> ds.on("cpu")[0] is ds.x
            True
        """
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev == self.x.device:
            return self.x, self.y
        cache = self.__dict__.setdefault("_on_device", {})  # a frozen dataclass: bypass __setattr__
        if str(dev) not in cache:
            cache[str(dev)] = (self.x.to(dev), self.y.to(dev))
        return cache[str(dev)]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_on_device", None)  # device copies stay where they are (Ray ships datasets)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the standardisation: map images of this dataset back to [0, 1] pixel units."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean


def cache_dir() -> Path:
    """Where downloaded datasets live: ``MU_DATA`` if set, else ``~/.cache/mu_lib``."""
    return Path(os.environ.get("MU_DATA") or Path.home() / ".cache" / "mu_lib").expanduser()


def _standardise(pixels: np.ndarray, name: str, classes: tuple[str, ...], labels: np.ndarray, *,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 official_test: np.ndarray | None = None, augment: str | None = None) -> Dataset:
    """Build a :class:`Dataset` from [0, 1] pixels ``[N, C, H, W]``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    if mean is None or std is None:
        mean = tuple(float(v) for v in x.mean(dim=(0, 2, 3)))
        std = tuple(float(v) for v in x.std(dim=(0, 2, 3)))
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = (x - m) / s
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return Dataset(name=name, x=x.contiguous(), y=y, classes=classes, mean=tuple(mean), std=tuple(std),
                   official_test=official_test, augment=augment)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = bunch.images.astype(np.float32)[:, None] / 16.0
    return _standardise(pixels, "digits", tuple(str(c) for c in range(10)), bunch.target)


ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")


def _load_animal_shapes() -> Dataset:
    spec = importlib.util.find_spec("animal_shape_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailableError(
            "dataset 'animal_shapes' needs the package animal-shape-mnist: pip install animal-shape-mnist")
    root = Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal Shape"
    files = [root / "animal_data_version_3.gz", root / "animal_label_version_3.gz"]
    for f in files:
        if not f.exists():
            raise DatasetUnavailableError(f"dataset 'animal_shapes': missing file {f}; reinstall animal-shape-mnist")
    # The package's own loader imports tensorflow; its two gzip-pickled arrays are read directly.
    with gzip.open(files[0], "rb") as fh:
        images = np.asarray(pickle.load(fh))
    with gzip.open(files[1], "rb") as fh:
        labels = np.asarray(pickle.load(fh))
    pixels = images.astype(np.float32)[:, None] / 255.0
    return _standardise(pixels, "animal_shapes", ANIMAL_CLASSES, labels)


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)  # the values of the NeurIPS 2023 starting kit
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _torchvision_download(cls_name: str, root: Path, download: bool, archive: str):
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except Exception as err:  # torchvision raises URLError, RuntimeError or OSError
        raise DatasetUnavailableError(
            f"could not load {cls_name} from the cache directory {root} ({type(err).__name__}: {err}). "
            f"Connect to the internet and retry, or place torchvision's {archive} in {root} "
            f"(set MU_DATA to use another directory)."
        ) from None
    return train, test


def _load_cifar10(download: bool = True) -> Dataset:
    root = cache_dir()
    train, test = _torchvision_download("CIFAR10", root, download, "cifar-10-python.tar.gz")
    pixels = np.concatenate([train.data, test.data]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    labels = np.concatenate([np.asarray(train.targets), np.asarray(test.targets)])
    n_train = len(train.targets)
    return _standardise(pixels, "cifar10", CIFAR10_CLASSES, labels, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                        official_test=np.arange(n_train, len(labels)), augment="crop_flip")


CIFAR10_LIKE_SEED = 20231
"""Seed of the generated ``cifar10_like`` images (fixed: the dataset is the same everywhere)."""


def _load_cifar10_like(n_train: int = 5000, n_test: int = 1000) -> Dataset:
    """Generated CIFAR-shaped images with a learnable signal (never downloaded; deterministic).

    Each class has a smooth random colour pattern (4x4 Gaussian noise upsampled bicubically to
    32x32). An image is mid-grey plus its class's pattern at a random amplitude in [0.05, 0.15],
    half that of another class's pattern, both at a random circular shift of up to 4 pixels and
    mirrored at random (so crops and flips are natural augmentations), a smooth background (8x8
    noise upsampled, standard deviation 0.25) and pixel noise (0.1); pixels are clipped to [0, 1]
    and quantised to 8 bits like a photograph. A linear model fits 600 images perfectly and gets
    about 60 % of the test set right; a small CNN learns it gradually, so both memorization and
    generalisation show.
    """
    import torch.nn.functional as F

    rng = np.random.default_rng(CIFAR10_LIKE_SEED)
    n, k = n_train + n_test, len(CIFAR10_CLASSES)
    coarse = torch.from_numpy(rng.standard_normal((k, 3, 4, 4)).astype(np.float32))
    pattern = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)
    pattern = (pattern - pattern.mean(dim=(1, 2, 3), keepdim=True)) / pattern.std(dim=(1, 2, 3), keepdim=True)
    shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
    variants = torch.stack([torch.roll(pattern, sh, dims=(2, 3)) for sh in shifts], 1)  # [k, 81, 3, 32, 32]
    variants = torch.cat([variants, variants.flip(-1)], 1).numpy()  # and their mirror images
    labels = rng.permutation(np.arange(n) % k)
    other = (labels + rng.integers(1, k, size=n)) % k
    amp = rng.uniform(0.05, 0.15, size=n).astype(np.float32)[:, None, None, None]
    first, second = rng.integers(0, variants.shape[1], size=(2, n))
    signal = variants[labels, first] + 0.5 * variants[other, second]
    background = torch.from_numpy(rng.standard_normal((n, 3, 8, 8)).astype(np.float32))
    background = F.interpolate(background, size=(32, 32), mode="bilinear", align_corners=False).numpy()
    pixels = 0.5 + amp * signal + 0.25 * background + 0.1 * rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
    pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0) / 255.0
    classes = tuple(f"pattern {c}" for c in range(k))
    return _standardise(pixels, "cifar10_like", classes, labels, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                        official_test=np.arange(n_train, n), augment="crop_flip")


def _load_mnist(download: bool = True) -> Dataset:
    root = cache_dir()
    train, test = _torchvision_download("MNIST", root, download, "MNIST/raw files")
    pixels = np.concatenate([train.data.numpy(), test.data.numpy()])[:, None].astype(np.float32) / 255.0
    labels = np.concatenate([train.targets.numpy(), test.targets.numpy()])
    n_train = len(train.targets)
    return _standardise(pixels, "mnist", tuple(str(c) for c in range(10)), labels, mean=(0.1307,),
                        std=(0.3081,), official_test=np.arange(n_train, len(labels)))


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "animal_shapes": _load_animal_shapes,
    "cifar10": _load_cifar10,
    "cifar10_like": _load_cifar10_like,
    "mnist": _load_mnist,
}
_DOWNLOADED = {"cifar10", "mnist"}
_CACHE: dict[str, Dataset] = {}


def available() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_LOADERS)


def load_dataset(name: str, *, download: bool = True) -> Dataset:
    """Load a dataset by name (cached in memory after the first call).

    Args:
        name: one of :func:`available`.
        download: for ``cifar10``/``mnist``, allow torchvision to download into :func:`cache_dir`.

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: for an unknown name.
        DatasetUnavailableError: when the data cannot be found or downloaded; the message names
            the cache directory and the file to place there.

    Example:
        >>> load_dataset("animal_shapes")
        Dataset('animal_shapes', n=10000, shape=(1, 28, 28), classes=10, official_test=none)
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available datasets are {available()}")
    if name not in _CACHE:
        loader = _LOADERS[name]
        _CACHE[name] = loader(download=download) if name in _DOWNLOADED else loader()
    return _CACHE[name]


def check_disjoint(**index_sets: np.ndarray) -> None:
    """Raise ``ValueError`` if any two of the named index sets share an index.

    Example:
        >>> check_disjoint(retain=np.array([0, 1]), forget=np.array([2]))
        >>> check_disjoint(retain=np.array([0, 1]), forget=np.array([1, 2]))
        Traceback (most recent call last):
        ...
        ValueError: retain and forget overlap in 1 index(es), e.g. [1]
    """
    names = list(index_sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = np.intersect1d(index_sets[a], index_sets[b])
            if common.size:
                raise ValueError(f"{a} and {b} overlap in {common.size} index(es), e.g. {common[:5].tolist()}")


class TensorLoader:
    """Mini-batches of in-memory tensors: indexing instead of a ``DataLoader``.

    Args:
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        batch_size: examples per batch.
        shuffle: reshuffle at every pass, using ``generator``.
        generator: a seeded ``torch.Generator`` for shuffling and augmentation; its draws happen
            on its own device, so a generator on the data's device never waits for the host.
        drop_last: drop the last incomplete batch.
        augment: ``"crop_flip"`` for random 4-pixel-padded crops and horizontal flips, or ``None``.
        device: where the data lives; ``x`` and ``y`` are moved there once, at construction.

    Example:
        >>> x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
        >>> loader = TensorLoader(x, y, batch_size=4)
        >>> [len(yb) for _, yb in loader], len(loader)
        ([4, 4, 2], 3)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 augment: str | None = None, device: str | torch.device | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y disagree in length: {x.shape[0]} vs {y.shape[0]}")
        if augment not in (None, "crop_flip"):
            raise ValueError(f"unknown augmentation {augment!r}; use 'crop_flip' or None")
        self.device = torch.device(device) if device is not None else x.device
        self.x, self.y = x.to(self.device), y.to(self.device)  # resident: one copy, not one per batch
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.drop_last = drop_last
        self.augment = augment

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.x.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            xb, yb = self.x[idx], self.y[idx]
            if self.augment == "crop_flip":
                xb = crop_flip(xb, generator=self.generator)
            yield xb, yb


def crop_flip(x: torch.Tensor, *, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crops of zero-padded images and random horizontal flips, one draw per image.

    Example:
        >>> crop_flip(torch.ones(2, 3, 8, 8), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 8, 8])
    """
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    at = generator.device  # draw where the generator lives (the data's device on the fast path)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=at).to(x.device)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=at).to(x.device)
    flip = (torch.rand(n, generator=generator, device=at) < 0.5).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # [n, h]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # [n, w]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [n, h, w, c]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True, eq=False)
class Splits:
    """Disjoint index sets of one dataset: train = retain ∪ forget, plus validation and test.

    Construct with :func:`make_splits`, or directly from index arrays (validated: in range, no
    duplicates, pairwise disjoint, non-empty forget and retain).

    Attributes:
        data: the dataset the indices refer to.
        retain: indices the unlearned model keeps.
        forget: indices whose influence must be removed.
        val: validation indices (never trained on).
        test: test indices (never trained on).
        description: how the forget set was chosen.

    Example:
        >>> ds = load_dataset("digits")
        >>> s = Splits(ds, retain=np.arange(0, 100), forget=np.arange(100, 110),
        ...            val=np.arange(110, 130), test=np.arange(130, 200))
        >>> s.sizes()
        {'retain': 100, 'forget': 10, 'val': 20, 'test': 70, 'train': 110}
        >>> Splits(ds, retain=np.arange(0, 100), forget=np.arange(90, 110), val=np.arange(110, 130),
        ...        test=np.arange(130, 200))
        Traceback (most recent call last):
        ...
        ValueError: retain and forget overlap in 10 index(es), e.g. [90, 91, 92, 93, 94]
    """

    data: Dataset
    retain: np.ndarray
    forget: np.ndarray
    val: np.ndarray
    test: np.ndarray
    description: str = "custom"
    _train: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.data)
        for name in ("retain", "forget", "val", "test"):
            object.__setattr__(self, name, index_array(getattr(self, name), name=f"{name} indices", n=n))
        if self.forget.size == 0:
            raise ValueError("the forget set is empty: there is nothing to unlearn")
        if self.retain.size == 0:
            raise ValueError("the retain set is empty")
        check_disjoint(retain=self.retain, forget=self.forget, val=self.val, test=self.test)
        object.__setattr__(self, "_train", np.sort(np.concatenate([self.retain, self.forget])))

    @property
    def train(self) -> np.ndarray:
        """Sorted indices of retain ∪ forget: what the original model was trained on."""
        return self._train

    def indices(self, part: Part) -> np.ndarray:
        """Indices of ``part``, one of ``"retain"``, ``"forget"``, ``"val"``, ``"test"``, ``"train"``."""
        if part not in PARTS:
            raise ValueError(f"unknown split part {part!r}; valid parts are {list(PARTS)}")
        return self.train if part == "train" else getattr(self, part)

    def sizes(self) -> dict[str, int]:
        """Number of examples in each part."""
        return {p: int(len(self.indices(p))) for p in PARTS}

    def xy(self, part: Part, *, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of ``part`` (copies, on ``device``; indexed on the device-resident
        copy of the dataset, :meth:`Dataset.on`)."""
        x_all, y_all = self.data.on(device) if device is not None else (self.data.x, self.data.y)
        idx = torch.from_numpy(self.indices(part)).to(x_all.device)
        return x_all[idx], y_all[idx]

    def loader(self, part: Part, *, batch_size: int, shuffle: bool = False, seed: int = 0,
               augment: bool = False, drop_last: bool = False,
               device: str | torch.device | None = None) -> TensorLoader:
        """A :class:`TensorLoader` over ``part``.

        Args:
            part: which examples.
            batch_size: examples per batch.
            shuffle: reshuffle at every pass (seeded by ``seed``).
            seed: seed of the loader's own generator, which lives on ``device`` (on the CPU the
                draws are those of a CPU generator seeded with ``seed``, as always).
            augment: apply the dataset's training augmentation (if it has one).
            drop_last: drop the last incomplete batch.
            device: where the data lives and batches are drawn.
        """
        x, y = self.xy(part, device=device)
        aug = self.data.augment if augment else None
        return TensorLoader(x, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, augment=aug,
                            generator=torch.Generator(device=x.device).manual_seed(int(seed)), device=x.device)

    def replace(self, *, description: str | None = None, **parts: np.ndarray) -> Splits:
        """A copy with some index sets replaced (validated again).

        Example:
            >>> s = make_splits("digits", val_size=100, test_size=300, seed=0)
            >>> s.replace(forget=s.forget[:5], retain=np.concatenate([s.retain, s.forget[5:]])).sizes()["forget"]
            5
        """
        unknown = sorted(set(parts) - {"retain", "forget", "val", "test"})
        if unknown:
            raise ValueError(f"unknown split part(s) {unknown}; valid parts are ['retain', 'forget', 'val', 'test']")
        kw = {p: getattr(self, p) for p in ("retain", "forget", "val", "test")}
        kw.update(parts)
        return Splits(self.data, description=self.description if description is None else description, **kw)

    def __repr__(self) -> str:
        s = self.sizes()
        return (f"Splits({self.data.name}, retain={s['retain']}, forget={s['forget']}, val={s['val']}, "
                f"test={s['test']}, forget set: {self.description})")


def make_splits(data: Dataset | str, *,
                forget: Literal["random", "class", "subpopulation", "memorization"] = "random",
                forget_fraction: float = 0.1, forget_class: int | None = None, train_size: int | None = None,
                val_size: int = 0, test_size: int | None = None, test_fraction: float = 0.2,
                num_clusters: int = 4, seed: int = 0, level: str | None = None,
                memorization: np.ndarray | Callable[[Dataset, np.ndarray], np.ndarray] | None = None) -> Splits:
    """Split a dataset into retain, forget, validation and test index sets.

    The test set is the dataset's official test split when it has one (subsampled to
    ``test_size``), else a random ``test_size`` (or ``test_fraction``) of the examples. Validation
    and training examples come from the rest; training examples are then divided into retain and
    forget:

    * ``"random"``: a uniformly random ``forget_fraction`` of the training examples;
    * ``"class"``: every training example of class ``forget_class``;
    * ``"subpopulation"``: within class ``forget_class``, the largest of ``num_clusters`` k-means
      clusters of the training images (a coherent sub-group, e.g. one pose of an animal);
    * ``"memorization"``: the ``forget_fraction`` of the training examples with the lowest
      (``level="low"``), the highest (``"high"``) or the closest to 0.5 (``"medium"``) memorization
      score, the three forget sets of Zhao et al. (NeurIPS 2024). ``data`` cannot train models, so
      the scores come from outside: an array over the whole dataset (finite on every training
      example), or a hook ``memorization(dataset, train_indices) -> scores of those examples``
      called once the training set is drawn (:func:`mu_lib.mia.memorization_hook` estimates them
      with shadow models, Feldman and Zhang 2020). Ties are broken at random with ``seed``.

    Args:
        data: a :class:`Dataset` or a dataset name.
        forget: how the forget set is chosen.
        forget_fraction: fraction of training examples forgotten (``"random"`` only).
        forget_class: the class to forget (``"class"`` and ``"subpopulation"``).
        train_size: number of training examples; ``None`` uses all that remain.
        val_size: number of validation examples.
        test_size: number of test examples; ``None`` keeps the whole official test split (or
            ``test_fraction`` of the data when there is none).
        test_fraction: fraction held out for testing when the dataset has no official test split.
        num_clusters: clusters for ``"subpopulation"``.
        seed: seed of every random choice.
        level: ``"low"``, ``"medium"`` or ``"high"`` (``"memorization"`` only).
        memorization: the memorization scores, or a hook that computes them (``"memorization"`` only).

    Returns:
        The validated :class:`Splits`.

    Raises:
        ValueError: for an unknown ``forget`` kind, a bad fraction or class, or sizes that do not fit.

    Example:
        >>> s = make_splits("digits", forget="class", forget_class=3, train_size=1000, val_size=100,
        ...                 test_size=300, seed=0)
        >>> bool((s.data.y[s.forget] == 3).all()), bool((s.data.y[s.retain] != 3).all())
        (True, True)
    """
    ds = load_dataset(data) if isinstance(data, str) else data
    if forget not in ("random", "class", "subpopulation", "memorization"):
        raise ValueError(f"unknown forget kind {forget!r}; use 'random', 'class', 'subpopulation' or 'memorization'")
    if forget == "memorization":
        if level not in MEMORIZATION_LEVELS:
            raise ValueError(f"level must be one of {list(MEMORIZATION_LEVELS)} for forget='memorization', "
                             f"got {level!r}")
        if memorization is None:
            raise ValueError("forget='memorization' needs memorization=: the scores over the dataset or a hook "
                             "(e.g. mu_lib.mia.memorization_hook) that computes them")
    rng = np.random.default_rng(seed)
    n = len(ds)
    if ds.official_test is not None:
        test = rng.permutation(ds.official_test)
        pool = np.setdiff1d(np.arange(n), ds.official_test)
        if test_size is not None:
            if not 0 < test_size <= len(test):
                raise ValueError(f"test_size={test_size} must be in [1, {len(test)}] for {ds.name}")
            test = test[:test_size]
    else:
        if test_size is None:
            if not 0 < test_fraction < 1:
                raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
            test_size = int(round(test_fraction * n))
        if not 0 < test_size < n:
            raise ValueError(f"test_size={test_size} must be in [1, {n - 1}] for {ds.name}")
        perm = rng.permutation(n)
        test, pool = perm[:test_size], perm[test_size:]
    pool = rng.permutation(pool)
    if val_size < 0 or val_size >= len(pool):
        raise ValueError(f"val_size={val_size} must be in [0, {len(pool) - 1}] for {ds.name}")
    val, pool = pool[:val_size], pool[val_size:]
    if train_size is not None:
        if not 1 < train_size <= len(pool):
            raise ValueError(f"train_size={train_size} must be in [2, {len(pool)}] for {ds.name} "
                             f"after {len(test)} test and {val_size} validation examples")
        pool = pool[:train_size]
    train = np.sort(pool)
    labels = ds.y.numpy()[train]
    if forget == "random":
        if not 0 < forget_fraction < 1:
            raise ValueError(f"forget_fraction must be in (0, 1), got {forget_fraction}")
        k = int(round(forget_fraction * len(train)))
        if k == 0:
            raise ValueError(f"forget_fraction={forget_fraction} of {len(train)} examples forgets nothing")
        forget_idx = np.sort(rng.choice(train, size=k, replace=False))
        desc = f"random {forget_fraction:.0%}"
    elif forget == "memorization":
        forget_idx = _memorization_forget(ds, train, str(level), memorization, forget_fraction, rng)
        desc = f"{level}-memorization {forget_fraction:.0%}"
    else:
        if forget_class is None or not 0 <= int(forget_class) < ds.num_classes:
            raise ValueError(f"forget_class must be in [0, {ds.num_classes}) for forget={forget!r}, "
                             f"got {forget_class!r}")
        members = train[labels == int(forget_class)]
        if members.size == 0:
            raise ValueError(f"class {forget_class} has no training examples")
        name = ds.classes[int(forget_class)]
        if forget == "class":
            forget_idx, desc = members, f"class {forget_class} ({name})"
        else:
            from sklearn.cluster import KMeans

            feats = ds.x[torch.from_numpy(members)].flatten(1).numpy()
            km = KMeans(n_clusters=num_clusters, n_init=4, random_state=seed).fit(feats)
            largest = np.bincount(km.labels_, minlength=num_clusters).argmax()
            forget_idx = np.sort(members[km.labels_ == largest])
            desc = f"sub-population of class {forget_class} ({name}): largest of {num_clusters} k-means clusters"
    retain = np.setdiff1d(train, forget_idx)
    return Splits(ds, retain=retain, forget=forget_idx, val=np.sort(val), test=np.sort(test), description=desc)


MEMORIZATION_LEVELS = ("low", "medium", "high")


def _memorization_forget(ds: Dataset, train: np.ndarray, level: str,
                         memorization: np.ndarray | Callable[[Dataset, np.ndarray], np.ndarray],
                         forget_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The forget set of one memorization level (RUM's rule: lowest, closest to 0.5, highest)."""
    if not 0 < forget_fraction < 1:
        raise ValueError(f"forget_fraction must be in (0, 1), got {forget_fraction}")
    k = int(round(forget_fraction * len(train)))
    if k == 0:
        raise ValueError(f"forget_fraction={forget_fraction} of {len(train)} examples forgets nothing")
    if callable(memorization):
        scores = np.asarray(memorization(ds, train.copy()), dtype=np.float64)
        if scores.shape != train.shape:
            raise ValueError(f"the memorization hook returned shape {scores.shape}; it must return one score per "
                             f"training example ({len(train)})")
    else:
        full = np.asarray(memorization, dtype=np.float64)
        if full.shape != (len(ds),):
            raise ValueError(f"memorization scores must have one entry per example of {ds.name} ({len(ds)}), "
                             f"got shape {full.shape}")
        scores = full[train]
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"memorization scores are missing (NaN or inf) for training examples "
                         f"{train[bad[:5]].tolist()}")
    order = rng.permutation(len(train))  # random tie-breaking, then a stable sort
    key = {"low": scores, "high": -scores, "medium": np.abs(scores - 0.5)}[level][order]
    return np.sort(train[order[np.argsort(key, kind="stable")[:k]]])


def mislabel(data: Dataset, indices: np.ndarray, *, seed: int = 0) -> Dataset:
    """A copy of ``data`` whose examples at ``indices`` carry a wrong label ("canaries").

    Each selected example gets a label drawn uniformly from the other ``num_classes - 1``
    classes. A model can only predict such a label by memorizing the example, which makes
    mislabelled examples the simplest canaries for measuring memorization. Images are shared
    with ``data`` (not copied); labels are copied.

    Args:
        data: the dataset.
        indices: which examples to mislabel (distinct, in range).
        seed: seed of the wrong labels.

    Returns:
        The new dataset (its ``name`` gets a ``+canaries`` suffix).

    Example:
        >>> ds = load_dataset("digits")
        >>> noisy = mislabel(ds, np.array([0, 1, 2]), seed=0)
        >>> bool((noisy.y[:3] != ds.y[:3]).all()), bool(torch.equal(noisy.y[3:], ds.y[3:]))
        (True, True)
    """
    idx = index_array(indices, name="indices", n=len(data))
    if idx.size == 0:
        raise ValueError("indices is empty: nothing to mislabel")
    rng = np.random.default_rng(seed)
    y = data.y.clone()
    shift = torch.from_numpy(rng.integers(1, data.num_classes, size=idx.size))
    y[torch.from_numpy(idx)] = (y[torch.from_numpy(idx)] + shift) % data.num_classes
    return Dataset(name=f"{data.name}+canaries", x=data.x, y=y, classes=data.classes, mean=data.mean, std=data.std,
                   official_test=data.official_test, augment=data.augment)
