"""Functional models: shapes, initialisation, batch norm, and the episode-fits-model check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn_edu.models import MLP, Conv4, batch_norm, check_episode, optimizee_mlp, sinusoid_mlp
from metalearn_edu.models.conv4 import _same_padding
from metalearn_edu.tasks.episode import Episode


def test_sinusoid_mlp_is_1_40_40_1_with_truncated_normal_weights():
    model = sinusoid_mlp()
    params = model.init(torch.Generator().manual_seed(0))
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    assert shapes == {
        "layer0.weight": (40, 1),
        "layer0.bias": (40,),
        "layer1.weight": (40, 40),
        "layer1.bias": (40,),
        "layer2.weight": (1, 40),
        "layer2.bias": (1,),
    }
    w = params["layer1.weight"]
    assert w.abs().max() <= 0.02 and 0.006 < w.std() < 0.01  # N(0, 0.01²) cut at 2σ
    assert model.forward(params, torch.zeros(7, 1)).shape == (7, 1)
    assert model.head_names == ("layer2.weight", "layer2.bias")


def test_init_is_reproducible_from_the_generator():
    for model in (sinusoid_mlp(), Conv4(), optimizee_mlp()):
        a = model.init(torch.Generator().manual_seed(3))
        b = model.init(torch.Generator().manual_seed(3))
        c = model.init(torch.Generator().manual_seed(4))
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert not all(torch.equal(a[n], c[n]) for n in a)


def test_mlp_matches_torch_nn():
    model = MLP((3, 5, 2), activation="tanh", init_scheme="xavier")
    params = model.init(torch.Generator().manual_seed(0))
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    net.load_state_dict(
        {k.replace("layer0", "0").replace("layer1", "2"): v for k, v in params.items()}
    )
    x = torch.randn(4, 3)
    assert torch.allclose(model.forward(params, x), net(x), atol=1e-6)


@pytest.mark.parametrize("size,expected", [(28, [14, 7, 4, 2]), (84, [42, 21, 11, 6])])
def test_stride_two_same_padding_halves_like_tensorflow(size, expected):
    sides = []
    for _ in range(4):
        before, after = _same_padding(size, 3, 2)
        size = (size + before + after - 3) // 2 + 1
        sides.append(size)
    assert sides == expected


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_conv4_matches_torch_nn_in_training_mode(downsample):
    model = Conv4(ways=5, downsample=downsample)
    params = model.init(torch.Generator().manual_seed(0))
    params = {n: p + 0.1 * torch.randn_like(p) if "norm" in n else p for n, p in params.items()}
    layers = []
    for i in range(4):
        conv = torch.nn.Conv2d(1 if i == 0 else 64, 64, 3, stride=1, padding=1)
        if downsample == "stride":  # 'SAME' here is (0, 1) or (1, 1): pad explicitly
            conv = torch.nn.Conv2d(1 if i == 0 else 64, 64, 3, stride=2)
        conv.weight.data, conv.bias.data = (
            params[f"block{i}.conv.weight"],
            params[f"block{i}.conv.bias"],
        )
        bn = torch.nn.BatchNorm2d(64, track_running_stats=False)
        bn.weight.data, bn.bias.data = (
            params[f"block{i}.norm.weight"],
            params[f"block{i}.norm.bias"],
        )
        layers.append((conv, bn))
    x = torch.randn(10, 1, 28, 28)
    h = x
    for conv, bn in layers:
        if downsample == "stride":
            pad = {28: (0, 1), 14: (0, 1), 7: (1, 1), 4: (0, 1)}[h.shape[-1]]
            h = F.pad(h, (pad[0], pad[1], pad[0], pad[1]))
        h = torch.relu(bn(conv(h)))
        if downsample == "maxpool":
            h = F.max_pool2d(h, 2)
    features = h.mean((2, 3)) if downsample == "stride" else h.flatten(1)
    expected = F.linear(features, params["head.weight"], params["head.bias"])
    assert torch.allclose(model.forward(params, x), expected, atol=1e-4)


def test_batch_norm_matches_native_and_can_take_statistics_from_elsewhere():
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    w, b = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    native = F.batch_norm(x, None, None, w, b, training=True)
    assert torch.allclose(batch_norm(x, w, b), native, atol=1e-12)
    support = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    mean = support.mean((0, 2, 3))
    var = support.var((0, 2, 3), unbiased=False)
    expected = F.batch_norm(x, mean, var, w, b, training=False)
    assert torch.allclose(batch_norm(x, w, b, stats_from=support), expected, atol=1e-12)


def test_non_transductive_conv4_classifies_each_query_independently():
    torch.manual_seed(0)
    support, queries = torch.randn(5, 1, 28, 28), torch.randn(8, 1, 28, 28)
    for transductive in (True, False):
        model = Conv4(transductive=transductive)
        params = model.init(torch.Generator().manual_seed(0))
        together = model.forward(params, queries, context=support)
        alone = torch.cat([model.forward(params, q[None], context=support) for q in queries])
        if transductive:  # statistics of the batch at hand: predictions depend on the other queries
            assert not torch.allclose(together, alone, atol=1e-3)
        else:
            assert torch.allclose(together, alone, atol=1e-5)


def _episode(x_shape, y):
    t, n = y.shape[:2]
    return Episode(torch.randn(t, n, *x_shape), y, torch.randn(t, n, *x_shape), y)


def test_check_episode_names_the_mismatch():
    check_episode(sinusoid_mlp(), _episode((1,), torch.randn(2, 5, 1)))
    with pytest.raises(ValueError, match=r"inputs of shape \(1,\).*support_x.*\(2,\)"):
        check_episode(sinusoid_mlp(), _episode((2,), torch.randn(2, 5, 1)))
    with pytest.raises(ValueError, match=r"predicts 1 value.*support_y.*\(3,\)"):
        check_episode(sinusoid_mlp(), _episode((1,), torch.randn(2, 5, 3)))
    with pytest.raises(ValueError, match=r"inputs of shape \(1, 28, 28\)"):
        check_episode(Conv4(), _episode((3, 84, 84), torch.zeros(2, 5, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"5 outputs \(ways\).*labels from 0 to 19"):
        check_episode(Conv4(ways=5), _episode((1, 28, 28), torch.arange(20).expand(2, 20).clone()))


def test_model_settings_are_validated():
    with pytest.raises(ValueError, match="downsample"):
        Conv4(downsample="avgpool")
    with pytest.raises(ValueError, match="sizes"):
        MLP((1,))
    with pytest.raises(ValueError, match="activation"):
        MLP((1, 2), activation="gelu")
