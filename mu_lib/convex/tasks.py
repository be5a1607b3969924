"""The convex chapters' binary tasks: two classes of a :mod:`mu_lib.data` dataset as unit-norm rows
with labels in {-1, +1}. The only file of :mod:`mu_lib.convex` that reads a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mu_lib.convex.objective import normalize_rows

__all__ = ["BinaryTask", "binary_task"]

# ----------------------------------------------------------------------------------------------
# the chapter's binary task
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BinaryTask:
    """Two classes of an image dataset as rows with ``||x|| = 1`` and labels in {-1, +1}.

    Attributes:
        X_train, y_train, X_test, y_test: the split (float64).
        classes: the two original class labels; the first is +1, the second -1.
        dataset: the dataset name.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, int]
    dataset: str

    def accuracy(self, w: np.ndarray, *, part: Literal["train", "test"] = "test") -> float:
        """Accuracy of the linear classifier ``sign(w^T x)`` on a part."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        X, y = (self.X_test, self.y_test) if part == "test" else (self.X_train, self.y_train)
        return float(np.mean(np.where(X @ np.asarray(w) >= 0, 1.0, -1.0) == y))


def binary_task(dataset_name: str, classes: tuple[int, int] = (3, 8), *, test_fraction: float = 0.2,
                seed: int = 0) -> BinaryTask:
    """The binary task of Guo et al.'s MNIST experiment, on any :mod:`mu_lib.data` dataset.

    Images are mapped back to [0, 1] pixels, shifted by -0.5 and flattened; every row is divided
    by its L2 norm (as in Guo et al.'s ``load_features``); ``classes[0] -> +1`` and
    ``classes[1] -> -1`` (3 -> +1, 8 -> -1 as in their code). The split is a stratified, seeded
    random split of all images of the two classes (for MNIST this pools the official training and
    test images, unlike Guo et al., who use the official split).

    Args:
        dataset_name: ``"digits"`` (ships with scikit-learn) or ``"mnist"`` (downloaded), ...
        classes: the two class labels.
        test_fraction: fraction of the two classes held out for testing.
        seed: seed of the split.

    Example:
        >>> task = binary_task("digits", test_fraction=0.2, seed=0)
        >>> task.X_train.shape, task.X_test.shape, sorted(set(task.y_train.tolist()))
        ((285, 64), (72, 64), [-1.0, 1.0])
    """
    from sklearn.model_selection import train_test_split

    from mu_lib.data import load_dataset

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    ds = load_dataset(dataset_name)
    a, c = (int(v) for v in classes)
    if a == c or not (0 <= a < ds.num_classes and 0 <= c < ds.num_classes):
        raise ValueError(f"classes must be two distinct labels in 0..{ds.num_classes - 1}, got {classes!r}")
    labels = ds.y.numpy()
    sel = np.flatnonzero((labels == a) | (labels == c))
    pixels = ds.to_pixels(ds.x[sel]).reshape(len(sel), -1).double().numpy()
    X = normalize_rows(pixels - 0.5)
    y = np.where(labels[sel] == a, 1.0, -1.0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    return BinaryTask(X_train=X_tr, y_train=y_tr, X_test=X_te, y_test=y_te, classes=(a, c), dataset=dataset_name)
