"""The scoring run: resumable, shardable, atomic, with the time cut-off, a Ray backend and validation.

The reference is always the same run done in one go, uninterrupted and unsharded: an interrupted
and restarted run, or the union of shards, must score exactly the same (bit-identical F, ε,
confidences and accuracies); only wall times differ.
"""

import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mu_lib import audit, competition, data, train, unlearn

N = 4
RECIPE = train.Recipe(epochs=3, batch_size=128, lr=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits():
    return data.make_splits("digits", forget_fraction=0.02, val_size=50, test_size=200, seed=0)


def _methods():
    return {"original": "original", "retrain": "retrain", "finetune": unlearn.get("finetune", epochs=1, lr=0.02)}


def _competition(splits, run_dir, **kw):
    options = dict(model="logreg", recipe=RECIPE, num_models=N, methods=_methods(), run_dir=run_dir, seed=0,
                   chunk_size=2)
    options.update(kw)
    return competition.Competition(splits, **options)


@pytest.fixture(scope="module")
def reference(splits, tmp_path_factory):
    """The uninterrupted, unsharded run: its directory and report."""
    run_dir = tmp_path_factory.mktemp("reference")
    comp = _competition(splits, run_dir)
    assert comp.run() == 1 + N + 3 * N  # timing, N retrained, N per method
    assert comp.run() == 0  # everything finished: nothing to do
    return run_dir, comp.report()


TIMES = {"seconds", "seconds_max", "time_ratio", "within_time", "run_ratios", "judged_by"}


def _same(u, v):
    if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
        return np.array_equal(np.asarray(u), np.asarray(v), equal_nan=np.asarray(u).dtype.kind == "f")
    if isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v):
        return True
    return u == v


def _assert_same_scores(a, b):
    """Everything but wall times is identical: every field of the report and of every method score."""
    for name in ("num_models", "cutoff", "retrain_retain_acc", "retrain_forget_acc", "retrain_test_acc",
                 "original_acc", "retrained_confs"):
        assert _same(getattr(a, name), getattr(b, name)), name
    assert list(a.methods) == list(b.methods)
    for label in a.methods:
        x, y = a[label], b[label]
        for f in x.__dataclass_fields__:
            if f not in TIMES:
                assert _same(getattr(x, f), getattr(y, f)), (label, f)


class _Counter:
    """Wraps the unit functions of `competition` and records every model computed."""

    def __init__(self, monkeypatch):
        self.names: list[str] = []
        orig_unlearn, orig_chunk, orig_timing = (competition.units._unit_unlearn, competition.units._unit_retrain_chunk,
                                                 competition.units._unit_timing)

        def unlearn_unit(ctx, method, seed):
            self.names.append(f"{method.name} seed {seed}")
            return orig_unlearn(ctx, method, seed)

        def chunk_unit(ctx, seeds):
            self.names += [f"retrain seed {s}" for s in seeds]
            return orig_chunk(ctx, seeds)

        def timing_unit(ctx, seed):
            self.names.append("timing")
            return orig_timing(ctx, seed)

        monkeypatch.setattr(competition.units, "_unit_unlearn", unlearn_unit)
        monkeypatch.setattr(competition.units, "_unit_retrain_chunk", chunk_unit)
        monkeypatch.setattr(competition.units, "_unit_timing", timing_unit)


class _Interrupt(Exception):
    pass


def _seed_names(comp):
    """Model name -> the counter's name of the computation that produces it."""
    out = {f"timing run on {competition.machine_id()}": "timing"}
    for _, task in comp._tasks():
        for name, seed in zip(task.names, task.seeds):
            if task.kind == "unlearn":
                out[name] = f"{task.method.name} seed {seed}"
            elif task.kind == "retrain":
                out[name] = f"retrain seed {seed}"
    return out


@pytest.mark.parametrize("stop_after", [3, 6])  # 3: inside retraining chunk 2; 6: among the unlearned models
def test_interrupted_run_resumes_without_recomputing_and_scores_identically(splits, reference, tmp_path, monkeypatch,
                                                                            stop_after):
    comp = _competition(splits, tmp_path)
    finished: list[str] = []

    def stop(name):
        finished.append(name)
        if len(finished) == stop_after:
            raise _Interrupt(name)

    with pytest.raises(_Interrupt):
        comp.run(callback=stop)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.npz")}
    assert len(before) == stop_after
    counter = _Counter(monkeypatch)
    restarted = _competition(splits, tmp_path)  # a fresh process would open the directory like this
    assert sorted(restarted.missing()) == sorted(set(_seed_names(restarted)) - set(finished))
    computed = restarted.run()
    assert computed == 1 + 4 * N - stop_after
    assert not restarted.missing()
    # No finished model was computed again. (A retraining chunk is trained as a whole, so a model of a
    # chunk that was cut in the middle may be trained again; its finished file is kept, not rewritten.)
    names = _seed_names(restarted)
    chunk_mates = {f"retrained model {i}": f"retrained model {i ^ 1}" for i in range(N)}
    chunk_mates.update({f"retrain {i}": f"retrain {i ^ 1}" for i in range(N)})  # retraining as a method
    redone = [n for n in finished if names[n] in counter.names]
    assert all(n in chunk_mates and chunk_mates[n] not in finished for n in redone), redone
    for p, content in before.items():
        assert p.read_bytes() == content
    _assert_same_scores(restarted.report(), reference[1])


def test_shards_union_scored_by_merge_equals_the_unsharded_run(splits, reference, tmp_path):
    _competition(splits, tmp_path, num_shards=3).original_model()  # train the original once, before the shards
    for shard in (2, 0):  # two of three machines have finished
        _competition(splits, tmp_path, num_shards=3).run(shard=shard)
    with pytest.raises(FileNotFoundError, match=r"models are missing.*finetune 1"):
        competition.merge(tmp_path)
    missing = _competition(splits, tmp_path, num_shards=3).missing()
    # shard 1 of 3 owns the unlearned models 1, 4, 7, ... and retraining chunk 1 (models 2 and 3)
    assert missing and all(int(name.split()[-1]) % 3 == 1 or name in ("retrained model 2", "retrained model 3",
                                                                       "retrain 2", "retrain 3") for name in missing)
    _competition(splits, tmp_path, num_shards=3).run(shard=1, num_shards=3)
    _assert_same_scores(competition.merge(tmp_path), reference[1])
    assert not list(tmp_path.rglob("*.tmp"))


def test_units_are_assigned_to_exactly_one_shard(splits, tmp_path):
    comp = _competition(splits, tmp_path)
    for k in (1, 2, 3, 5):
        owners = {}
        for shard_of, task in comp._tasks():
            if task.kind == "timing":  # every shard times retraining on its own machine
                assert shard_of is None
                continue
            for name in task.names:
                owners.setdefault(name, set()).add(shard_of % k)
        assert all(len(v) == 1 for v in owners.values())
        assert len(owners) == 4 * N


def test_each_run_is_judged_by_the_retraining_time_of_its_own_machine(splits, tmp_path, monkeypatch):
    """Two shards on two machines: each times its own retraining and judges its own runs against it."""
    from mu_lib.competition import units

    comp = _competition(splits, tmp_path, num_shards=2, methods={"finetune": unlearn.get("finetune", epochs=1)})
    comp.original_model()
    monkeypatch.setattr(units, "machine_id", lambda device=None: "fast-box")
    comp.run(shard=0)
    monkeypatch.setattr(units, "machine_id", lambda device=None: "slow-box")
    real_timing = units._unit_timing

    def slow_timing(ctx, seed):  # the second machine retrains 1000 times slower
        res = real_timing(ctx, seed)
        return {**res, "seconds": res["seconds"] * 1000}

    monkeypatch.setattr(units, "_unit_timing", slow_timing)
    comp.run(shard=1)
    rep = comp.report()
    assert set(rep.references) == {"fast-box", "slow-box"}
    assert rep.references["slow-box"] > 100 * rep.references["fast-box"]
    ft = rep["finetune"]
    assert ft.judged_by == ("fast-box", "slow-box", "fast-box", "slow-box")  # run j on shard j % 2
    runs = [competition.report._read_result(tmp_path / "unlearn" / "finetune" / f"{i:05d}.npz") for i in range(N)]
    expected = [r["seconds"] / rep.references[r["meta"]["machine"]] for r in runs]
    np.testing.assert_allclose(ft.run_ratios, expected)
    assert ft.time_ratio == pytest.approx(np.mean(expected))
    assert "each run judged on its own machine (2 machines)" in " ".join(rep.verdicts())
    # A run from a machine that never timed its retraining cannot be judged: merge says which.
    (tmp_path / "retrain" / "timing" / "slow-box.npz").unlink()
    with pytest.raises(FileNotFoundError, match="slow-box.*no timing reference"):
        competition.merge(tmp_path)
    assert "timing run on slow-box" in comp.missing()


def test_atomic_writes_leave_no_partial_files(splits, tmp_path, monkeypatch):
    comp = _competition(splits, tmp_path)
    real_savez = np.savez

    def savez_then_crash(fh, **arrays):
        real_savez(fh, **arrays)
        fh.write(b"half of the next block")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(OSError, match="disk full"):
        comp.run()
    assert not list(tmp_path.rglob("*.npz"))  # the result never appeared under its final name
    assert not list(tmp_path.rglob("*.tmp"))  # and its temporary file was removed
    monkeypatch.setattr(np, "savez", real_savez)
    assert comp.run() == 1 + 4 * N
    # A temporary file left by a killed process is ignored.
    (tmp_path / "retrain" / ".00000.npz.abc.tmp").write_bytes(b"junk")
    assert _competition(splits, tmp_path).missing() == []


def test_report_matches_the_audit_functions(splits, reference):
    run_dir, rep = reference
    s = len(splits.forget)
    assert rep.num_models == N and rep.retrained_confs.shape == (N, s)
    for _label, m in rep.methods.items():
        assert m.confs.shape == (N, s)
        eps = audit.per_example_epsilons(m.confs, rep.retrained_confs)
        np.testing.assert_array_equal(m.epsilons, eps)
        assert m.forget_quality == audit.forget_score(m.confs, rep.retrained_confs)
        cal = audit.calibrated_forget_score(m.confs, rep.retrained_confs)
        assert _same(m.calibrated_forget_quality, cal.score) and m.calibrated_conclusive == cal.conclusive
        assert m.max_certifiable_epsilon == cal.max_certifiable_epsilon
        # N = 4 cannot certify the first bucket edge: the table shows the status, never a bare number
        assert not m.calibrated_conclusive and math.isnan(m.calibrated_forget_quality)
        assert m.row()["calibrated_forget_quality"].startswith("inconclusive")
        assert m.retain_ratio == pytest.approx(m.retain_acc / rep.retrain_retain_acc)
        assert m.final_score == pytest.approx(m.forget_quality * m.retain_ratio * m.test_ratio, rel=1e-12)
    assert rep["original"].forget_quality == 0.0  # N copies of one model: ε = 50 (the range guard)
    assert rep["original"].retain_acc == rep.original_acc["retain_acc"]
    table = rep.table(sort=True)
    assert list(table.index) == [m for m in table.index]  # label index
    assert {"forget_quality", "final_score", "retain_ratio", "test_ratio", "seconds", "time_ratio",
            "within_time", "calibrated_forget_quality"} <= set(table.columns)


def test_time_cutoff(reference):
    run_dir, rep = reference
    ft = rep["finetune"]
    assert list(rep.references) == [competition.machine_id()] and ft.judged_by == (competition.machine_id(),) * N
    assert ft.time_ratio == pytest.approx(ft.seconds / rep.retrain_seconds)
    assert rep["retrain"].time_ratio == 1.0 and not rep["retrain"].within_time  # retraining is never fast enough
    assert "retrain" in rep.rejected()
    assert competition.merge(run_dir, cutoff=ft.time_ratio * 1.01)["finetune"].within_time
    slow = competition.merge(run_dir, cutoff=ft.time_ratio * 0.99)
    assert not slow["finetune"].within_time and "finetune" in slow.rejected()
    assert any("finetune" in v and "REJECTED" in v for v in slow.verdicts())
    assert slow.cutoff_seconds == pytest.approx(ft.time_ratio * 0.99 * rep.retrain_seconds)
    assert slow["finetune"].final_score == ft.final_score  # rejection is a verdict, not a penalty
    table = slow.table(sort=True)
    assert not table["within_time"].iloc[-1]  # rejected methods sort last


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster of two CPUs (Ray is in the test extra)."""
    ray = pytest.importorskip("ray", reason="Ray is installed with the test extra: pip install -e .[test]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_backend_gives_the_same_scores_as_the_local_one(splits, reference, tmp_path, ray_cluster):
    comp = _competition(splits, tmp_path)
    assert comp.run(backend="ray", ray_options={"num_cpus": 1}) == 1 + 4 * N
    assert comp.run(backend="ray") == 0  # resumable as the local backend is
    rep = comp.report()
    _assert_same_scores(rep, reference[1])  # field for field, except times
    assert rep["finetune"].judged_by == (competition.machine_id(),) * N  # one node: this machine judged all


def test_ray_backend_without_ray_says_how_to_install(splits, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match="pip install"):
        _competition(splits, tmp_path).run(backend="ray")


def test_validation(splits, reference, tmp_path):
    run_dir = reference[0]
    with pytest.raises(ValueError, match="num_models must be an integer >= 2"):
        _competition(splits, tmp_path, num_models=1)
    with pytest.raises(ValueError, match="unknown unlearning method 'forget_everything'"):
        _competition(splits, tmp_path, methods=["forget_everything"])
    with pytest.raises(ValueError, match="label"):
        _competition(splits, tmp_path, methods={"../escape": "original"})
    with pytest.raises(ValueError, match="unknown backend"):
        _competition(splits, tmp_path).run(backend="spark")
    with pytest.raises(ValueError, match="shard must be"):
        _competition(splits, tmp_path / "two", num_shards=2).run(shard=2)
    # A run directory made for other splits or seeds is detected, naming what differs.
    other = data.make_splits("digits", forget_fraction=0.02, val_size=50, test_size=200, seed=1)
    with pytest.raises(ValueError, match="splits_sha256"):
        _competition(other, run_dir)
    with pytest.raises(ValueError, match="seed"):
        _competition(splits, run_dir, seed=1)
    with pytest.raises(ValueError, match="num_models"):
        _competition(splits, run_dir, num_models=6)
    # A label reused with other hyperparameters is detected too.
    with pytest.raises(ValueError, match="finetune"):
        _competition(splits, run_dir, methods={"finetune": unlearn.get("finetune", epochs=2)})
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        competition.merge(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="never run"):
        competition.merge(run_dir, methods=["scrub"])


def test_a_restart_under_another_environment_or_shard_plan_refuses_naming_it(splits, reference, monkeypatch):
    run_dir = reference[0]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["precision"] == "fp32" and manifest["device"] == "cpu"
    assert manifest["shard_plan"] == {"num_shards": 1} and manifest["torch_version"] == __import__("torch").__version__
    assert manifest["code_version"].startswith(__import__("mu_lib").__version__)
    with pytest.raises(ValueError, match=r"precision: run directory has 'fp32', this run 'bf16'"):
        _competition(splits, run_dir, precision="bf16")
    with pytest.raises(ValueError, match="shard_plan"):
        _competition(splits, run_dir, num_shards=2)
    with pytest.raises(ValueError, match="shard plan differs.*1 shard.*asks for 2"):
        _competition(splits, run_dir).run(shard=0, num_shards=2)
    monkeypatch.setattr(competition.run, "_code_version", lambda: "9.9 (source sha256 000000000000)")
    with pytest.raises(ValueError, match="code_version"):
        _competition(splits, run_dir)
    monkeypatch.undo()
    monkeypatch.setattr("torch.__version__", "1.0.0")
    with pytest.raises(ValueError, match="torch_version.*1.0.0"):
        _competition(splits, run_dir)


@dataclass(frozen=True)
class _FlakyConfig(unlearn.UnlearnConfig):
    pass


FLAKY = {"fail": {1, 2}}  # seeds index (model number) -> fail


def test_a_failing_unit_is_recorded_the_others_go_on_and_a_rerun_retries_only_it(splits, tmp_path):
    from mu_lib.unlearn import base

    @unlearn.register("flaky_test_method", config=_FlakyConfig, family="reference", uses=("retain",),
                      summary="fails for some models", reference="-")
    def _flaky(model, splits, cfg, *, device, seed):
        if seed in FLAKY["fail"]:
            raise RuntimeError(f"flaky failure for seed {seed}")
        return model

    try:
        comp = _competition(splits, tmp_path, methods={"flaky": "flaky_test_method", "original": "original"})
        seeds = {name: seed for _, t in comp._tasks() for name, seed in zip(t.names, t.seeds)}
        FLAKY["fail"] = {seeds["flaky 1"], seeds["flaky 2"]}
        with pytest.raises(competition.UnitsFailedError, match="2 model.*flaky 1.*flaky failure") as err:
            comp.run()
        assert set(err.value.failures) == {"flaky 1", "flaky 2"}
        assert err.value.computed == 1 + N + N + (N - 2)  # timing, retrained, original, the other flaky
        assert set(comp.failures()) == {"flaky 1", "flaky 2"}
        assert comp.missing() == ["flaky 1", "flaky 2"]  # everything else was computed
        with pytest.raises(FileNotFoundError, match="flaky 1.*flaky failure"):
            comp.report()
        assert comp.report(methods=["original"])["original"].num_runs == N  # the others can be scored
        FLAKY["fail"] = set()
        finished = []
        assert comp.run(callback=finished.append) == 2
        assert finished == ["flaky 1", "flaky 2"] and comp.failures() == {} and comp.missing() == []
        assert comp.report()["flaky"].num_runs == N
    finally:
        base._REGISTRY.pop("flaky_test_method", None)
        FLAKY["fail"] = {1, 2}


def test_result_files_from_another_run_are_rejected(splits, reference, tmp_path):
    run_dir = reference[0]
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    # A stranger's result file (another configuration) dropped into the directory is detected.
    stranger = tmp_path / "stranger"
    _competition(splits, stranger, seed=5, methods={"original": "original"}).run()
    shutil.copy(stranger / "unlearn" / "original" / "00001.npz", copy / "unlearn" / "original" / "00001.npz")
    with pytest.raises(ValueError, match="another configuration"):
        competition.merge(copy)
    assert Path(run_dir, "manifest.json").exists()


def test_early_stop_skips_the_rest_of_a_far_too_slow_method(splits, reference, tmp_path):
    # With a cut-off of a millionth of the retraining time every real method is "far too slow".
    comp = _competition(splits, tmp_path, cutoff=1e-6)
    k = competition.EARLY_STOP_RUNS
    assert comp.run(early_stop=True) == 1 + 2 * N + 2 * k  # timing, retrained, "retrain" method, k per method
    for label in ("original", "finetune"):
        assert (tmp_path / "unlearn" / label / "stopped.json").exists()
    assert comp.missing() == []
    rep = comp.report()
    ft = rep["finetune"]
    assert ft.stopped_early and ft.num_runs == k and not ft.within_time
    assert np.isnan(ft.forget_quality) and np.isnan(ft.final_score) and ft.confs.shape[0] == k
    assert not rep["retrain"].stopped_early and rep["retrain"].num_runs == N  # the calibration is never stopped
    assert any("finetune" in v and f"stopped after {k} runs" in v for v in rep.verdicts())
    assert list(rep.table(sort=True).index)[-1] in ("original", "finetune")
    # Without early stopping the remaining runs are made, and the method is scored in full.
    assert comp.run() == 2 * (N - k)
    full = comp.report()
    assert not full["finetune"].stopped_early
    assert full["finetune"].forget_quality == reference[1]["finetune"].forget_quality
