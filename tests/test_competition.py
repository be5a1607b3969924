"""The scoring run: resumable, shardable, atomic, with the time cut-off, a Ray backend and validation.

The reference is always the same run done in one go, uninterrupted and unsharded: an interrupted
and restarted run, or the union of shards, must score exactly the same (bit-identical F, ε,
confidences and accuracies); only wall times differ.
"""

import shutil
import sys
import types
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


def _assert_same_scores(a, b):
    """Everything but wall times is identical."""
    np.testing.assert_array_equal(a.retrained_confs, b.retrained_confs)
    assert (a.retrain_retain_acc, a.retrain_test_acc) == (b.retrain_retain_acc, b.retrain_test_acc)
    assert list(a.methods) == list(b.methods)
    for label in a.methods:
        x, y = a[label], b[label]
        np.testing.assert_array_equal(x.confs, y.confs)
        np.testing.assert_array_equal(x.epsilons, y.epsilons)
        assert (x.forget_quality, x.final_score, x.retain_acc, x.test_acc, x.calibrated_forget_quality) == \
               (y.forget_quality, y.final_score, y.retain_acc, y.test_acc, y.calibrated_forget_quality)


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
    out = {"timing run": "timing"}
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
    _competition(splits, tmp_path).original_model()  # train the original once, before the shards start
    for shard in (2, 0):  # two of three machines have finished
        _competition(splits, tmp_path).run(shard=shard, num_shards=3)
    with pytest.raises(FileNotFoundError, match=r"models are missing.*finetune 1"):
        competition.merge(tmp_path)
    missing = _competition(splits, tmp_path).missing()
    # shard 1 of 3 owns the unlearned models 1, 4, 7, ... and retraining chunk 1 (models 2 and 3)
    assert missing and all(int(name.split()[-1]) % 3 == 1 or name in ("retrained model 2", "retrained model 3",
                                                                       "retrain 2", "retrain 3") for name in missing)
    _competition(splits, tmp_path).run(shard=1, num_shards=3)
    _assert_same_scores(competition.merge(tmp_path), reference[1])
    assert not list(tmp_path.rglob("*.tmp"))


def test_units_are_assigned_to_exactly_one_shard(splits, tmp_path):
    comp = _competition(splits, tmp_path)
    for k in (1, 2, 3, 5):
        owners = {}
        for shard_of, task in comp._tasks():
            for name in task.names:
                owners.setdefault(name, set()).add(shard_of % k)
        assert all(len(v) == 1 for v in owners.values())
        assert len(owners) == 1 + 4 * N


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
        assert m.calibrated_forget_quality == audit.calibrated_epsilons(m.confs, rep.retrained_confs).forget_score
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


def _fake_ray(calls):
    """A minimal stand-in for Ray: tasks run when submitted; refs resolve to their results."""

    class Ref:
        def __init__(self, value):
            self.value = value

    def resolve(a):
        return a.value if isinstance(a, Ref) else a

    class Remote:
        def __init__(self, fn, options):
            self.fn, self.options = fn, options

        def remote(self, *args):
            calls["tasks"] += 1
            calls["options"] = self.options
            return Ref(self.fn(*[resolve(a) for a in args]))

    def remote(fn=None, **options):
        return Remote(fn, {}) if fn is not None else (lambda f: Remote(f, options))

    ray = types.ModuleType("ray")
    ray.is_initialized = lambda: calls["init"] > 0
    ray.init = lambda: calls.__setitem__("init", calls["init"] + 1)
    ray.remote = remote
    ray.put = Ref
    ray.get = lambda ref: ref.value
    ray.wait = lambda refs, num_returns=1: (refs[:num_returns], refs[num_returns:])
    return ray


def test_ray_backend_runs_the_same_units(splits, reference, tmp_path, monkeypatch):
    calls = {"tasks": 0, "init": 0, "options": None}
    monkeypatch.setitem(sys.modules, "ray", _fake_ray(calls))
    comp = _competition(splits, tmp_path)
    assert comp.run(backend="ray", ray_options={"num_cpus": 1}) == 1 + 4 * N
    assert calls["init"] == 1 and calls["options"] == {"num_cpus": 1}
    assert calls["tasks"] == 1 + 2 * N // 2 + 2 * N  # timing, 2 chunks x (retrain, "retrain" method), 2 x N unlearned
    _assert_same_scores(comp.report(), reference[1])


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
        _competition(splits, tmp_path).run(shard=2, num_shards=2)
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
