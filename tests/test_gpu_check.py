"""The prepared GPU check runs end to end on the CPU at toy size (``--device cpu --quick``).

No GPU runs in the test suite; this keeps ``benchmarks/gpu_check.py`` working, so that it runs
unchanged on a CUDA machine.
"""

import importlib.util
import json
import math

import pytest
from conftest import REPO
from test_book import chapters

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_chapter_has_a_workload_for_the_projection(gpu_check):
    names = {c.split("/")[-1] for c in chapters()}
    assert names <= set(gpu_check.WORKLOADS), f"add a gpu workload for {sorted(names - set(gpu_check.WORKLOADS))}"


def test_gpu_check_runs_on_the_cpu_quickly(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    status = gpu_check.main(["--device", "cpu", "--quick", "--methods", "original,finetune,neggrad_plus",
                             "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    res = json.loads(out.read_text())
    assert res["failed"] == [] and res["quick"]
    tp = res["throughput"]
    assert tp["fast_precision"] == "bf16" and tp["deep"]["model"] == "resnet9_tiny"
    assert tp["deep"]["ratio"] == pytest.approx(tp["deep"]["fp32"] / tp["deep"]["bf16"])
    assert set(res["methods"]["methods"]) == {"original", "finetune", "neggrad_plus"}
    assert res["epsilons"]["equal"] and res["dpsgd"]["same_batches"] and res["fit_many"]["ok"]
    proj = res["projections"]["chapters"]
    assert set(proj) == set(gpu_check.WORKLOADS)
    for chapter, row in proj.items():
        terms = gpu_check.WORKLOADS[chapter]
        assert (row["here"] > 0) == bool(terms), chapter
        assert math.isnan(row["t4"]) or row["t4"] == 0  # no T4 ratio for a CPU without --t4-ratio
    assert "no T4 ratio for a CPU" in printed and "fast path" in printed


def test_t4_ratio_from_the_data_sheets(gpu_check, monkeypatch):
    import torch

    dev = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    ratio, source = gpu_check.t4_ratio(dev, None)
    assert ratio == pytest.approx(max(989 / 65, 4800 / 320)) and "H200" in source
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    assert gpu_check.t4_ratio(dev, None)[0] == 1.0
    assert gpu_check.t4_ratio(dev, 7.5)[0] == 7.5
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Mystery GPU 9000")
    assert gpu_check.t4_ratio(dev, None)[0] is None
