"""The compile report runs on the CPU: one graph, no break, for MAML's vmapped meta-gradient."""

from __future__ import annotations

import json

import pytest
from _maml_helpers import one_thread

from metalearn_edu import compile_report


@pytest.mark.slow
def test_the_sinusoid_meta_gradient_compiles_to_one_graph(tmp_path, capsys):
    output = tmp_path / "report.json"
    argv = ["--device", "cpu", "--workload", "sinusoid", "--meta-batch", "3"]
    argv += ["--modes", "default", "--repeats", "2", "--output", str(output)]
    args = compile_report.build_parser().parse_args(argv)
    with one_thread():
        report = compile_report.run(args)
    (row,) = report["modes"]
    assert (row["graph_count"], row["graph_break_count"], row["break_reasons"]) == (1, 0, [])
    assert row["compile_mode"] == "default" and row["it_per_s"] > 0 and row["first_call_s"] > 0
    assert "Name" in row["top_kernels"]  # the profiler's table
    assert json.loads(output.read_text())["modes"][0]["graph_count"] == 1
    assert "mode default, float32, conv2d: 1 graph(s), 0 break(s)" in capsys.readouterr().out


def test_conv4_with_matmul_convolutions_compiles_to_one_graph():
    argv = ["--device", "cpu", "--workload", "omniglot-5w1s", "--meta-batch", "1"]
    argv += ["--modes", "default", "--repeats", "1", "--convs", "matmul", "--precision", "bf16"]
    with one_thread():
        report = compile_report.run(compile_report.build_parser().parse_args(argv))
    (row,) = report["modes"]
    assert (row["conv"], row["precision"], row["graph_count"], row["graph_break_count"]) == (
        "matmul",
        "bf16",
        1,
        0,
    )


def test_unknown_convolutions_and_tf32_on_a_cpu_are_refused():
    parser = compile_report.build_parser()
    with pytest.raises(SystemExit, match="--convs takes names from"):
        compile_report.run(parser.parse_args(["--device", "cpu", "--convs", "conv2d,fft"]))
    with pytest.raises(SystemExit, match="'tf32' needs a CUDA device"):
        compile_report.run(parser.parse_args(["--device", "cpu", "--precision", "tf32"]))


def test_cuda_without_a_gpu_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        compile_report.main(["--device", "cuda"])


def test_the_cudnn_benchmark_comparison_runs_and_restores_the_setting():
    import torch

    before = torch.backends.cudnn.benchmark
    with one_thread():
        speeds = compile_report.vmap_with_cudnn_benchmark("sinusoid", 2, "cpu", 1)
    assert set(speeds) == {"cudnn_benchmark_false", "cudnn_benchmark_true"}
    assert all(v > 0 for v in speeds.values())
    assert torch.backends.cudnn.benchmark == before
