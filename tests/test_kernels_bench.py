"""The GPU kernel benchmark (kernels/bench.py): its accounting, records and files on the CPU; the
timed run itself only on a CUDA GPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from metalearn_edu.kernels import bench
from metalearn_edu.kernels._dispatch import interpreting, triton_available
from metalearn_edu.kernels.inner_update import bytes_moved, inner_update_reference
from metalearn_edu.models import Conv4

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_bandwidth_and_summary():
    assert bench.bandwidth_gbs(2_000_000_000, 1000.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        bench.bandwidth_gbs(10, 0.0)
    record = {"bytes": 4_000_000, "triton_ms": 0.001, "eager_ms": 0.004, "compiled_ms": 0.002}
    out = bench.summarize(record, copy_gbs=5000.0)
    assert out["triton_gbs"] == pytest.approx(4000.0)
    assert out["fraction_of_copy"] == pytest.approx(0.8)
    assert out["speedup_vs_eager"] == pytest.approx(4.0)
    assert out["speedup_vs_compiled"] == pytest.approx(2.0)
    assert out["eager_gbs"] == pytest.approx(1000.0)


def test_inner_update_cases_and_their_bytes():
    cases = {c["name"]: c for c in bench.inner_update_cases()}
    conv4 = Conv4(ways=5).init(torch.Generator().manual_seed(0))
    assert cases["conv4-omniglot-maml"]["shapes"] == [tuple(p.shape) for p in conv4.values()]
    assert cases["conv4-omniglot-maml"]["tasks"] == 32  # the MAML paper's Omniglot meta-batch

    large = cases["large-maml"]
    n, tasks = 1 << 20, large["tasks"]
    # forward: θ once (shared), g read and θ' written per task, one α; float32
    per_tensor = 4 * (n + 2 * tasks * n + 1)
    assert bench.inner_update_bytes(large, 4, backward=False) == len(large["shapes"]) * per_tensor
    meta_sgd = cases["large-metasgd"]
    one = bytes_moved(tasks, n, 4, theta_shared=True, alpha="entry", alpha_grad=True)
    assert bench.inner_update_bytes(meta_sgd, 4, backward=True) == len(meta_sgd["shapes"]) * (
        one["forward"] + one["backward"]
    )
    quick = {c["name"]: c for c in bench.inner_update_cases(quick=True)}
    assert len(quick["large-maml"]["shapes"]) < len(large["shapes"])


class CountingContext(bench.BenchContext):
    """Times nothing: returns a fixed time and remembers what it was asked to time."""

    def time(self, fn):
        fn()
        self.timed = getattr(self, "timed", 0) + 1
        return 2.0


@pytest.mark.skipif(
    not (triton_available() and interpreting()), reason="needs the Triton interpreter"
)
def test_inner_update_case_checks_and_records_on_the_cpu():
    """The benchmark's workload, check and records, run on CPU tensors in the interpreter (the
    'compiled' column is the eager reference here: compiling is for the GPU run)."""
    ctx = CountingContext(torch.device("cpu"), copy_gbs=100.0)
    case = {"name": "tiny", "shapes": [(3, 5), (1030,)], "tasks": 3, "alpha": "entry"}
    records = bench._bench_inner_update_case(ctx, case, inner_update_reference)
    assert [r["pass"] for r in records] == ["forward", "forward+backward"]
    assert ctx.timed == 6  # Triton, eager, compiled for each pass
    fwd = records[0]
    assert fwd["entries_per_task"] == 15 + 1030 and fwd["tensors"] == 2
    assert fwd["bytes"] == bench.inner_update_bytes(case, 4, backward=False)
    assert fwd["triton_gbs"] == pytest.approx(fwd["bytes"] / 2e-3 / 1e9)
    assert fwd["speedup_vs_compiled"] == 1.0


def test_check_stops_on_a_wrong_kernel():
    params = {"w": torch.randn(4, requires_grad=True)}
    grads = {"w": torch.randn(2, 4, requires_grad=True)}

    def wrong(p, g, lr):
        return {"w": p["w"] - 1.001 * lr * g["w"]}

    with pytest.raises(AssertionError, match="differs"):
        bench._check_inner_update(
            wrong, inner_update_reference, params, grads, 0.5, [params["w"], grads["w"]]
        )


def test_results_files(tmp_path):
    record = bench.summarize(
        {
            "kernel": "inner_update",
            "case": "large-maml",
            "pass": "forward",
            "bytes": 10**9,
            "triton_ms": 0.25,
            "eager_ms": 1.0,
            "compiled_ms": 0.5,
        },
        copy_gbs=4000.0,
    )
    env = {"card": "NVIDIA H200", "torch": "2.11", "date": "2026-01-01T00:00:00+00:00"}
    results = {"environment": env, "copy_gbs": 4000.0, "records": [record]}
    path = bench.write_results(results, tmp_path)
    assert path.name == "kernels_nvidia_h200.json"
    assert json.loads(path.read_text()) == results
    table = (tmp_path / "kernels_nvidia_h200.md").read_text()
    assert "| inner_update | large-maml | forward | 0.2500 | 4000 | 100% | 4.00 | 2.00 |" in table
    assert "4000 GB/s" in table


def test_registry_holds_the_inner_update():
    assert "inner_update" in bench.BENCHMARKS
    env = bench.environment()
    assert env["torch"] == torch.__version__ and "date" in env


@no_cuda
def test_refuses_clearly_without_cuda(capsys):
    with pytest.raises(bench.NoGPUError, match="needs a CUDA GPU"):
        bench.run(out_dir=None)
    with pytest.raises(bench.NoGPUError):
        bench.cuda_median_ms(lambda: None)
    assert bench.main(["--quick"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@cuda
def test_quick_run_on_the_gpu(tmp_path):
    results = bench.run(["inner_update"], quick=True, out_dir=tmp_path)
    assert results["copy_gbs"] > 0
    for r in results["records"]:
        assert math.isfinite(r["triton_gbs"]) and r["triton_ms"] > 0
    assert (tmp_path / next(tmp_path.glob("*.json")).name).exists()
