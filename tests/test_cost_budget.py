"""`cost.unlearning_epochs` against a loop over whole epochs."""

import pytest

from mu_lib import cost


@pytest.mark.parametrize("epochs,retain,train,fraction", [
    (30, 3600, 4000, 0.2), (30, 1080, 1200, 0.2), (12, 45000, 50000, 0.2), (2, 540, 600, 0.2),
    (182, 45000, 50000, 0.2), (10, 100, 100, 0.5), (30, 3600, 4000, 1.0)])
def test_unlearning_epochs_is_the_largest_whole_epoch_count_that_fits(epochs, retain, train, fraction):
    limit = fraction * cost.training_passes(epochs=epochs, examples=retain)
    k = 0
    while cost.training_passes(epochs=k + 1, examples=train) <= limit:
        k += 1
    got = cost.unlearning_epochs(retrain_passes=cost.training_passes(epochs=epochs, examples=retain),
                                 train_examples=train, fraction=fraction)
    assert got == max(1, k)


@pytest.mark.parametrize("kwargs", [dict(retrain_passes=0, train_examples=10),
                                    dict(retrain_passes=100, train_examples=0),
                                    dict(retrain_passes=100, train_examples=10, fraction=0.0)])
def test_unlearning_epochs_rejects_bad_input(kwargs):
    with pytest.raises(ValueError, match="retrain_passes"):
        cost.unlearning_epochs(**kwargs)
