"""Conv4's convolutions as im2col and a matrix product (``conv="matmul"``): the same function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _maml_helpers import classification_episode, float64, max_abs_diff

from metalearn_edu.algorithms import MAML, MetaSGD
from metalearn_edu.models import Conv4
from metalearn_edu.models.conv4 import conv2d_as_matmul


def _random(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    ("channels", "size", "stride"),
    [(1, (9, 9), 2), (3, (7, 10), 1), (4, (8, 5), 2), (2, (3, 3), 1)],
)
def test_conv2d_as_matmul_equals_conv2d(channels, size, stride):
    x, w, b = _random(2, channels, *size), _random(5, channels, 3, 3, seed=1), _random(5, seed=2)
    got = conv2d_as_matmul(x, w, b, stride)
    assert got.shape == F.conv2d(x, w, b, stride=stride).shape
    assert (got - F.conv2d(x, w, b, stride=stride)).abs().max() < 1e-13


def test_conv2d_as_matmul_first_and_second_derivatives_match_finite_differences():
    x = _random(2, 2, 5, 6).requires_grad_()
    w = _random(3, 2, 3, 3, seed=1).requires_grad_()
    b = _random(3, seed=2).requires_grad_()
    for stride in (1, 2):
        assert torch.autograd.gradcheck(lambda *a, s=stride: conv2d_as_matmul(*a, s), (x, w, b))
        assert torch.autograd.gradgradcheck(lambda *a, s=stride: conv2d_as_matmul(*a, s), (x, w, b))


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("transductive", [True, False])
def test_conv4_forward_is_the_same_either_way(downsample, transductive):
    size = 16 if downsample == "maxpool" else 11
    models = {
        conv: Conv4(
            ways=3,
            image_size=size,
            hidden=4,
            downsample=downsample,
            transductive=transductive,
            conv=conv,
        )
        for conv in ("conv2d", "matmul")
    }
    params = float64(models["conv2d"].init(torch.Generator().manual_seed(0)))
    x, context = _random(6, 1, size, size), _random(3, 1, size, size, seed=1)
    out = {conv: model.layer_outputs(params, x, context) for conv, model in models.items()}
    for layer in out["conv2d"]:
        assert (out["matmul"][layer] - out["conv2d"][layer]).abs().max() < 1e-12, layer


@pytest.mark.parametrize("algorithm_class", [MAML, MetaSGD])
@pytest.mark.parametrize("execution", ["loop", "vmap"])
def test_second_order_meta_gradient_is_the_same_either_way(algorithm_class, execution):
    episode = classification_episode(image_size=9)
    grads = {}
    for conv in ("conv2d", "matmul"):
        algorithm = algorithm_class(
            Conv4(ways=3, image_size=9, hidden=4, conv=conv),
            inner_lr=0.3,
            inner_steps=2,
            execution=execution,
        )
        params = float64(algorithm.init_meta_params(torch.Generator().manual_seed(1)))
        grads[conv], _ = algorithm.meta_gradient(params, episode)
    assert max_abs_diff(grads["matmul"], grads["conv2d"]) < 1e-12


def test_compiled_matmul_convolutions_are_one_graph_with_the_vmap_meta_gradient():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    episode = classification_episode(image_size=9)
    grads = {}
    for execution in ("vmap", "compiled"):
        algorithm = MAML(Conv4(ways=3, image_size=9, hidden=4, conv="matmul"), inner_lr=0.3,
                         execution=execution)  # fmt: skip
        params = float64(algorithm.init_meta_params(torch.Generator().manual_seed(2)))
        grads[execution], _ = algorithm.meta_gradient(params, episode)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert max_abs_diff(grads["compiled"], grads["vmap"]) < 1e-10


def test_unknown_conv_is_refused():
    with pytest.raises(ValueError, match="conv must be one of"):
        Conv4(conv="winograd")


def test_the_command_line_and_the_benchmark_choose_the_convolutions(tmp_path):
    import argparse

    from metalearn_edu import bench
    from metalearn_edu.__main__ import main
    from metalearn_edu.presets import build_algorithm
    from metalearn_edu.train_cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--preset", "omniglot-5w1s", "--conv", "matmul"]))
    assert build_algorithm(config).model.conv == "matmul"
    config = config_from_args(parser.parse_args(["--preset", "omniglot-5w1s"]))
    assert build_algorithm(config).model.conv == "conv2d"
    with pytest.raises(SystemExit):
        parser.parse_args(["--conv", "fft"])
    with pytest.raises(ValueError, match="the sinusoid MLP has none"):
        main(["train", "--preset", "sinusoid", "--conv", "matmul", "--iterations", "1",
              "--checkpoint", str(tmp_path / "run.pt"), "--no-progress"])  # fmt: skip
    assert not (tmp_path / "run.pt").exists()
    algorithm, _, _ = bench.workload("omniglot-5w1s", 1, 1, False, "vmap", conv="matmul")
    assert algorithm.model.conv == "matmul"
    with pytest.raises(ValueError, match="option of Conv4"):
        bench.workload("sinusoid", 1, 1, False, "vmap", conv="matmul")
