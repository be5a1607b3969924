import pytest
import torch

from mu_lib import runtime


def test_profiles_and_pick(monkeypatch):
    monkeypatch.setenv("MU_PROFILE", "smoke")
    prof = runtime.get_profile()
    assert prof.name == "smoke"
    assert prof.pick(smoke=1, cpu=2, gpu=3) == 1
    assert runtime.get_profile("full").pick(smoke=1, cpu=2, gpu=3) == 3  # full falls back to gpu
    with pytest.raises(ValueError, match="unknown profile name"):
        prof.pick(smoke=1, laptop=2)
    with pytest.raises(ValueError, match="no value given for profile 'cpu'"):
        runtime.get_profile("cpu").pick(smoke=1)
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        runtime.get_profile("laptop")


def test_default_profile_follows_hardware(monkeypatch):
    monkeypatch.delenv("MU_PROFILE", raising=False)
    monkeypatch.delenv("MU_DEVICE", raising=False)
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert runtime.get_profile().name == expected


def test_unlearn_budget_is_a_fifth_of_training():
    for name in runtime.PROFILES:
        prof = runtime.get_profile(name)
        assert prof.unlearn_epoch_budget == max(1, -(-prof.epochs // 5))
        assert prof.recipe.epochs == prof.epochs


def test_setup_seeds_and_prints_banner(capsys):
    prof = runtime.setup(chapter="test", seed=3, profile="smoke", device="cpu")
    a = torch.rand(3)
    out = capsys.readouterr().out
    assert "profile smoke" in out and "device cpu" in out and "seed 3" in out and "chapter test" in out
    runtime.setup(chapter="test", seed=3, profile="smoke", device="cpu", verbose=False)
    assert torch.equal(a, torch.rand(3))
    assert prof.device == "cpu" and prof.seed == 3


def test_bad_seed_and_device():
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)
    with pytest.raises(ValueError, match="unknown device"):
        runtime.resolve_device("tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.resolve_device("cuda")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("MU_PROGRESS", "0")
    assert not runtime.progress_enabled()
    monkeypatch.setenv("MU_PROGRESS", "1")
    assert runtime.progress_enabled()
    assert list(runtime.progress(range(3), enabled=True, disable=True)) == [0, 1, 2]


def test_live_session_follows_the_jupyter_server(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("MU_PROGRESS", raising=False)
    assert not runtime.live_session()  # tests run headless, not in Colab
    monkeypatch.setenv("JPY_SESSION_NAME", "chapter.ipynb")
    assert runtime.live_session() and runtime.progress_enabled()


def test_gpu_smoke_profile_is_the_gpu_path_at_smoke_size():
    gs, gpu, smoke = (runtime.get_profile(n) for n in ("gpu_smoke", "gpu", "smoke"))
    assert gs.dataset == "cifar10_like" and gs.model.startswith(gpu.model)  # resnet9 at a sixteenth of the width
    assert gs.augment == gpu.augment and gs.precision == "bf16" and gpu.precision == "auto"
    assert (gs.train_size, gs.val_size, gs.test_size, gs.epochs) == (smoke.train_size, smoke.val_size,
                                                                    smoke.test_size, smoke.epochs)
    assert runtime.get_profile("cpu").precision == smoke.precision == "fp32"
    assert runtime.get_profile("full").model == "resnet18" and gpu.model == "resnet9"
    # chapters name only smoke/cpu/gpu: gpu_smoke takes the smoke value, full the gpu value
    assert gs.pick(smoke=1, cpu=2, gpu=3) == 1 and gs.pick(smoke=1, cpu=2, gpu=3, gpu_smoke=4) == 4
    with pytest.raises(ValueError, match="no value given for profile 'gpu_smoke'"):
        gs.pick(cpu=2, gpu=3)


def test_setup_sets_the_profile_precision_and_prints_it(capsys):
    from mu_lib import fastpath

    saved = list(fastpath._ACTIVE)
    try:
        prof = runtime.setup(chapter="t", profile="gpu_smoke", device="cpu")
        assert prof.precision == "bf16" and fastpath.default_precision() == "bf16"
        assert prof.fast_path.name == "bf16" and prof.fast_path.channels_last
        assert "precision bf16" in capsys.readouterr().out
        assert runtime.setup(chapter="t", profile="cpu", device="cpu", precision="fp16", verbose=False
                             ).precision == "fp16"
        with pytest.raises(ValueError, match="unknown precision"):
            runtime.setup(chapter="t", profile="cpu", device="cpu", precision="int8", verbose=False)
    finally:
        fastpath._ACTIVE[:] = saved
