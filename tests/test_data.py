import numpy as np
import pytest
import torch

from mu_lib import data


def test_builtin_datasets_load_offline():
    digits = data.load_dataset("digits")
    animals = data.load_dataset("animal_shapes")
    assert (len(digits), digits.in_channels, digits.image_size, digits.num_classes) == (1797, 1, 8, 10)
    assert (len(animals), animals.in_channels, animals.image_size) == (10000, 1, 28)
    assert np.bincount(animals.y.numpy()).tolist() == [1000] * 10
    # standardised: about zero mean and unit variance per channel
    assert abs(float(animals.x.mean())) < 1e-3 and abs(float(animals.x.std()) - 1) < 1e-3
    pixels = animals.to_pixels(animals.x[:10])
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'.*digits"):
        data.load_dataset("imagenet")


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("MU_DATA", str(tmp_path))
    data._CACHE.pop("cifar10", None)
    with pytest.raises(data.DatasetUnavailableError, match=str(tmp_path)) as err:
        data.load_dataset("cifar10", download=False)
    assert "cifar-10-python.tar.gz" in str(err.value)


@pytest.mark.parametrize("kind", ["random", "class", "subpopulation"])
def test_make_splits_disjoint_and_covering(kind):
    s = data.make_splits("digits", forget=kind, forget_fraction=0.1, forget_class=3, val_size=100, test_size=300,
                         seed=1)
    parts = [s.retain, s.forget, s.val, s.test]
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx) == 1797
    assert np.array_equal(s.train, np.sort(np.concatenate([s.retain, s.forget])))
    y = s.data.y.numpy()
    if kind == "random":
        assert len(s.forget) == round(0.1 * len(s.train))
    if kind == "class":
        assert (y[s.forget] == 3).all() and (y[s.retain] != 3).all()
    if kind == "subpopulation":
        assert (y[s.forget] == 3).all() and (y[s.retain] == 3).any()


def test_splits_are_seeded():
    a = data.make_splits("digits", val_size=50, test_size=300, seed=5)
    b = data.make_splits("digits", val_size=50, test_size=300, seed=5)
    c = data.make_splits("digits", val_size=50, test_size=300, seed=6)
    assert np.array_equal(a.forget, b.forget) and not np.array_equal(a.forget, c.forget)


def test_bad_splits_name_the_problem():
    ds = data.load_dataset("digits")
    r, v, t = np.arange(0, 100), np.arange(110, 120), np.arange(120, 130)
    with pytest.raises(ValueError, match="retain and forget overlap"):
        data.Splits(ds, retain=r, forget=np.arange(95, 105), val=v, test=t)
    with pytest.raises(ValueError, match="forget set is empty"):
        data.Splits(ds, retain=r, forget=np.array([], dtype=int), val=v, test=t)
    with pytest.raises(ValueError, match=r"out of range \[0, 1797\): \[5000\]"):
        data.Splits(ds, retain=r, forget=np.array([5000]), val=v, test=t)
    with pytest.raises(ValueError, match="duplicates"):
        data.Splits(ds, retain=r, forget=np.array([100, 100]), val=v, test=t)
    with pytest.raises(ValueError, match="integers"):
        data.Splits(ds, retain=r, forget=np.array([1.5]), val=v, test=t)
    with pytest.raises(ValueError, match="unknown forget kind"):
        data.make_splits("digits", forget="everything")
    with pytest.raises(ValueError, match="forget_class must be in"):
        data.make_splits("digits", forget="class", forget_class=11)
    with pytest.raises(ValueError, match="forget_fraction"):
        data.make_splits("digits", forget_fraction=1.5)
    with pytest.raises(ValueError, match="train_size"):
        data.make_splits("digits", train_size=10**6)
    with pytest.raises(ValueError, match="unknown split part"):
        data.make_splits("digits").indices("holdout")


def test_loader_batches_cover_part_once(digits_splits):
    loader = digits_splits.loader("retain", batch_size=64, shuffle=True, seed=0)
    seen = torch.cat([yb for _, yb in loader])
    assert len(seen) == len(digits_splits.retain) == loader.num_examples
    assert sorted(seen.tolist()) == sorted(digits_splits.xy("retain")[1].tolist())
    again = torch.cat([yb for _, yb in digits_splits.loader("retain", batch_size=64, shuffle=True, seed=0)])
    assert torch.equal(seen, again)
    assert len(digits_splits.loader("retain", batch_size=64, drop_last=True)) == len(digits_splits.retain) // 64


def test_crop_flip_is_a_crop_of_the_padded_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = data.crop_flip(x, generator=gen, padding=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        found = any(torch.equal(out[i], padded[i, :, r:r + 6, c:c + 6]) or
                    torch.equal(out[i], padded[i, :, r:r + 6, c:c + 6].flip(-1))
                    for r in range(5) for c in range(5))
        assert found


def test_cifar10_like_is_generated_deterministic_and_cifar_shaped():
    ds = data.load_dataset("cifar10_like")
    fresh = data._load_cifar10_like()  # generated again from scratch: identical
    assert torch.equal(ds.x, fresh.x) and torch.equal(ds.y, fresh.y)
    assert (len(ds), ds.in_channels, ds.image_size, ds.num_classes) == (6000, 3, 32, 10)
    assert ds.mean == data.CIFAR10_MEAN and ds.std == data.CIFAR10_STD and ds.augment == "crop_flip"
    assert np.array_equal(ds.official_test, np.arange(5000, 6000))
    assert np.bincount(ds.y.numpy()).tolist() == [600] * 10
    pixels = ds.to_pixels(ds.x)
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    levels = torch.unique((pixels[:20] * 255).round() - pixels[:20] * 255)
    assert float(levels.abs().max()) < 1e-3  # quantised to 8 bits, like a photograph


def test_cifar10_like_has_a_learnable_signal():
    from mu_lib import models, train

    s = data.make_splits("cifar10_like", val_size=0, test_size=500, train_size=1000, seed=0)
    net = models.make_model("logreg", num_classes=10, in_channels=3, image_size=32, seed=0)
    train.fit(net, *s.xy("train"), epochs=5, batch_size=100, lr=0.05, seed=0, precision="fp32", progress=False)
    acc = train.evaluate(net, *s.xy("test")).accuracy
    assert 0.3 < acc < 0.95  # far above chance (0.1), far from trivially separable
