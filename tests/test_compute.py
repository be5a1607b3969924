"""A chapter's compute arithmetic: models x epochs x measured seconds per epoch."""

import pytest

from mu_lib import compute, runtime


def test_note_multiplies_and_adds():
    a = compute.ComputeNote(models=3, epochs=12, seconds_per_epoch=4.0, what="ResNet-9")
    b = compute.ComputeNote(models=64, epochs=0.5, seconds_per_epoch=2.0)
    assert a.seconds == 144.0 and (a + b).seconds == 144.0 + 64.0
    assert a.text() == "3 models x 12 epochs x 4 s per epoch = 2.4 min (ResNet-9)"
    assert (a + b).arithmetic() == "3 models x 12 epochs x 4 s per epoch + 64 models x 0.5 epochs x 2 s per epoch"
    assert compute.ComputeNote(models=1, epochs=1, seconds_per_epoch=1.5).text() == \
        "1 model x 1 epoch x 1.5 s per epoch = 1.5 s"
    with pytest.raises(ValueError, match="seconds_per_epoch must be a finite number >= 0"):
        compute.ComputeNote(models=1, epochs=1, seconds_per_epoch=float("nan"))
    assert [compute.fmt_seconds(s) for s in (0.25, 42, 150, 7200)] == ["0.25 s", "42 s", "2.5 min", "2.0 h"]


class _FixedWatch:
    """A stopwatch that always reads one second."""

    def __init__(self, device=None):
        self.seconds = 1.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_epoch_seconds_scales_the_timed_steps_to_one_epoch(monkeypatch):
    monkeypatch.setattr(runtime, "Stopwatch", _FixedWatch)
    # 4 timed steps of 100 took 1 s: an epoch of 1,000 examples (10 steps) takes 2.5 s
    assert compute.epoch_seconds("logreg", dataset="digits", examples=1000, batch_size=100, steps=4,
                                 warmup=0) == pytest.approx(2.5)
    assert compute.epoch_seconds("logreg", dataset="digits", examples=1001, batch_size=100, steps=4,
                                 warmup=1) == pytest.approx(11 / 4)
    with pytest.raises(ValueError, match="examples, batch_size and steps must be >= 1"):
        compute.epoch_seconds("logreg", dataset="digits", examples=0, batch_size=100)


def test_profile_note_uses_the_profile(monkeypatch):
    monkeypatch.setattr(runtime, "Stopwatch", _FixedWatch)
    prof = runtime.get_profile("smoke")
    note = compute.profile_note(prof, models=5, examples=640, steps=10)
    assert note.models == 5 and note.epochs == prof.epochs
    assert note.seconds_per_epoch == pytest.approx(1.0)  # 10 timed steps = one epoch of 640 at 64
    assert note.what == "small_cnn on animal_shapes, fp32"
