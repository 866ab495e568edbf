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


@pytest.mark.slow
def test_the_compiled_references_the_benchmark_times_are_one_graph_each():
    """The GPU benchmark compiles each reference with ``fullgraph=True`` (a graph break would
    raise there, on scarce GPU time): here each compiles on the CPU and matches eager PyTorch,
    forward and backward."""
    from metalearn_edu.kernels.lstm_optimizer_step import lstm_optimizer_step_reference
    from metalearn_edu.kernels.meta_lstm_step import meta_lstm_step_reference
    from metalearn_edu.learned_optimizers import LSTMOptimizer
    from metalearn_edu.meta_lstm import MetaLearnerState, init_meta_learner

    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    n, hidden = 37, 20
    optimizer = LSTMOptimizer(hidden=hidden)
    lstm_params = {k: v.requires_grad_() for k, v in optimizer.init(g).items()}
    lstm_state = [(rand(n, hidden), rand(n, hidden)) for _ in range(2)]
    meta_params = {k: (0.1 * v).requires_grad_() for k, v in init_meta_learner(hidden, g).items()}
    meta_state = MetaLearnerState(rand(n, hidden), rand(n, hidden), rand(n), rand(n), rand(n))
    inner_params, inner_grads = (
        {"w": rand(3, 5), "b": rand(5)},
        {"w": rand(4, 3, 5), "b": rand(4, 5)},
    )
    cases = {
        "lstm_optimizer_step": (
            lambda f: (lambda u, s: [u, *(t for pair in s for t in pair)])(
                *f(optimizer, lstm_params, torch.randn(n) * 1e-2, lstm_state)
            ),
            lstm_optimizer_step_reference,
            [*lstm_params.values(), *(t for pair in lstm_state for t in pair)],
        ),
        "meta_lstm_step": (
            lambda f: list(f(meta_params, meta_state, torch.tensor(1.3), torch.randn(n) * 1e-2)),
            meta_lstm_step_reference,
            [*meta_params.values(), *meta_state],
        ),
        "inner_update": (
            lambda f: list(f(inner_params, inner_grads, 0.4).values()),
            inner_update_reference,
            [*inner_params.values(), *inner_grads.values()],
        ),
    }
    for name, (outputs, reference, inputs) in cases.items():
        torch._dynamo.reset()
        compiled = torch.compile(reference, fullgraph=True)
        results = []
        for fn in (reference, compiled):
            torch.manual_seed(1)  # the same random grad and cotangents for both
            out = outputs(fn)
            cotangents = [torch.randn(o.shape) for o in out]
            results.append([*out, *torch.autograd.grad(out, inputs, cotangents, allow_unused=True)])
        for got, expected in zip(results[1], results[0], strict=True):
            if expected is None:
                assert got is None, name
            else:
                assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), name
