"""Linear CKA against independent derivations (float64), Conv4's layer outputs, layer_similarity
against a per-task recomputation, and AdaptOnly (the layer-freezing experiment behind ANIL)."""

from __future__ import annotations

import math

import pytest
import torch
from _maml_helpers import one_thread

from metalearn_edu.algorithms import ANIL, MAML, MetaSGD
from metalearn_edu.algorithms.metasgd import LR_PREFIX
from metalearn_edu.algorithms.partial import AdaptOnly, layer_of
from metalearn_edu.evaluation import meta_test_tasks
from metalearn_edu.models import Conv4, sinusoid_mlp
from metalearn_edu.representations import layer_similarity, linear_cka
from metalearn_edu.tasks.episode import Episode


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def hsic_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA from its definition: HSIC(K, L) = tr(KHLH)/(n-1)^2 with an explicit centering matrix."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.trace(a @ h @ b @ h).item() / (n - 1) ** 2

    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


def feature_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """The feature-space form ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) of centred X, Y."""
    x, y = x - x.mean(0), y - y.mean(0)
    fro = torch.linalg.matrix_norm
    return (fro(y.T @ x) ** 2 / (fro(x.T @ x) * fro(y.T @ y))).item()


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(randn(d, d, seed=seed))
    return q * torch.sign(torch.diagonal(r))


@pytest.mark.parametrize(("n", "p", "q"), [(20, 7, 13), (6, 40, 3), (50, 1, 4)])
def test_cka_matches_hsic_definition_and_feature_form(n, p, q):
    x, y = randn(n, p, seed=1), randn(n, q, seed=2) + 0.5 * randn(n, 1, seed=3)
    got = linear_cka(x, y)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert got.item() == pytest.approx(hsic_cka(x, y), rel=1e-12)
    assert got.item() == pytest.approx(feature_cka(x, y), rel=1e-12)


def test_identical_representations_score_one_and_unrelated_ones_less():
    x = randn(30, 10, seed=4)
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-14)
    unrelated = linear_cka(x, randn(30, 10, seed=5)).item()
    assert 0.0 < unrelated < 0.7


def test_invariant_to_orthogonal_maps_isotropic_scaling_and_translation():
    x, z = randn(25, 8, seed=6), randn(25, 5, seed=7) + randn(25, 8, seed=6)[:, :5]
    reference = linear_cka(x, z).item()
    q = orthogonal(8, seed=8)
    assert linear_cka(x @ q, x).item() == pytest.approx(1.0, abs=1e-13)
    assert linear_cka(x @ q, z).item() == pytest.approx(reference, rel=1e-12)
    assert linear_cka(-3.7 * x, z).item() == pytest.approx(reference, rel=1e-12)
    assert linear_cka(x + randn(1, 8, seed=9), z).item() == pytest.approx(reference, rel=1e-12)


def test_anisotropic_scaling_closed_form():
    # X = U diag(s) with orthonormal, centred columns U; Y = X diag(d).
    # Then K = sum s_i^2 u_i u_i^T,
    # L = sum s_i^2 d_i^2 u_i u_i^T, and CKA = sum s^4 d^2 / sqrt(sum s^4 * sum s^4 d^4).
    n = 12
    centred = randn(n, 3, seed=10) - randn(n, 3, seed=10).mean(0)
    u, _ = torch.linalg.qr(centred)
    s = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    d = torch.tensor([1.0, 4.0, 0.2], dtype=torch.float64)
    x = u * s
    expected = (s**4 * d**2).sum() / torch.sqrt((s**4).sum() * (s**4 * d**4).sum())
    assert linear_cka(x, x * d).item() == pytest.approx(expected.item(), rel=1e-12)
    assert expected.item() < 0.9  # not invariant to an invertible, non-orthogonal linear map


def test_one_feature_each_is_the_squared_pearson_correlation():
    x, y = randn(40, 1, seed=11), randn(40, 1, seed=12) + 0.8 * randn(40, 1, seed=11)
    r = torch.corrcoef(torch.cat([x, y], dim=1).T)[0, 1].item()
    assert linear_cka(x, y).item() == pytest.approx(r**2, rel=1e-12)


def test_symmetric_bounded_and_flattens_feature_maps():
    x, y = randn(9, 4, 3, 3, seed=13), randn(9, 2, 5, seed=14)
    value = linear_cka(x, y).item()
    assert 0.0 <= value <= 1.0
    assert linear_cka(y, x).item() == pytest.approx(value, rel=1e-12)
    assert linear_cka(x.reshape(9, -1), y.reshape(9, -1)).item() == pytest.approx(value, rel=1e-12)


def test_cka_rejects_what_it_cannot_compare():
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(randn(5, 3), randn(6, 3))
    with pytest.raises(ValueError, match="at least 2 examples"):
        linear_cka(randn(1, 3), randn(1, 3))
    with pytest.raises(ValueError, match="the same for every example"):
        linear_cka(torch.ones(5, 3, dtype=torch.float64), randn(5, 3))


@pytest.mark.parametrize(
    ("downsample", "sides"), [("stride", (14, 7, 4, 2)), ("maxpool", (14, 7, 3, 1))]
)
def test_conv4_layer_outputs_end_in_forward(downsample, sides):
    model = Conv4(ways=5, hidden=6, downsample=downsample)
    params = model.init(torch.Generator().manual_seed(0))
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    outputs = model.layer_outputs(params, x)
    assert tuple(outputs) == model.layer_names
    for i, side in enumerate(sides):
        assert outputs[f"block{i}"].shape == (4, 6, side, side)
        assert (outputs[f"block{i}"] >= 0).all()  # after the ReLU
    assert torch.equal(outputs["head"], model.forward(params, x))


def test_conv4_layer_outputs_drop_the_context_rows():
    model = Conv4(ways=3, image_size=8, hidden=4, transductive=False)
    params = model.init(torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)
    support, queries = torch.rand(3, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g)
    outputs = model.layer_outputs(params, queries, context=support)
    assert all(v.shape[0] == 5 for v in outputs.values())
    assert torch.equal(outputs["head"], model.forward(params, queries, context=support))


class ImageTasks:
    """Random 3-way 2-shot tasks of 8x8 images whose class shifts the mean brightness."""

    ways, shots, queries = 3, 2, 4

    def sample(self, meta_batch_size: int, generator: torch.Generator | None = None) -> Episode:
        def part(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.arange(self.ways).repeat_interleave(k).expand(meta_batch_size, -1)
            x = torch.rand(meta_batch_size, self.ways * k, 1, 8, 8, generator=generator)
            return x + 0.3 * y[..., None, None, None], y.contiguous()

        sx, sy = part(self.shots)
        qx, qy = part(self.queries)
        return Episode(sx, sy, qx, qy)


MODEL = Conv4(ways=3, image_size=8, hidden=4)


def double_params(alg: MAML) -> dict[str, torch.Tensor]:
    params = alg.init_meta_params(torch.Generator().manual_seed(0))
    return {n: p.double() for n, p in params.items()}


def test_layer_similarity_is_cka_of_each_task_before_and_after_k_steps():
    alg = MAML(MODEL, inner_lr=0.5)
    params, tasks = double_params(alg), ImageTasks()
    table = layer_similarity(alg, params, tasks, num_tasks=5, max_steps=3, batch_size=2, seed=3)
    assert table.shape == (5, 3, len(MODEL.layer_names)) and table.dtype == torch.float64
    for t, (sx, sy, qx, _) in enumerate(
        meta_test_tasks(MODEL, tasks, 5, batch_size=2, seed=3, dtype=torch.float64)
    ):
        before = MODEL.layer_outputs(params, qx)
        for k in (1, 2, 3):
            leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
            adapted = alg.adapt(leaves, sx, sy, inner_steps=k, first_order=True)
            after = MODEL.layer_outputs({n: p.detach() for n, p in adapted.items()}, qx)
            for j, name in enumerate(MODEL.layer_names):
                expected = hsic_cka(before[name].flatten(1), after[name].flatten(1))
                assert table[t, k - 1, j].item() == pytest.approx(expected, rel=1e-10)
    assert (table < 1 - 1e-6).all()  # MAML's inner loop changes every layer


def test_anil_leaves_the_body_unchanged_and_zero_rates_leave_everything():
    tasks = ImageTasks()
    anil = ANIL(MODEL, inner_lr=0.5)
    table = layer_similarity(anil, double_params(anil), tasks, num_tasks=4, max_steps=2)
    assert torch.allclose(table[..., :-1], torch.ones_like(table[..., :-1]), atol=1e-12)
    assert (table[..., -1] < 1 - 1e-6).all()

    metasgd = MetaSGD(MODEL, inner_lr=0.5)
    params = double_params(metasgd)
    frozen = {n: torch.zeros_like(p) if n.startswith(LR_PREFIX) else p for n, p in params.items()}
    table = layer_similarity(metasgd, frozen, tasks, num_tasks=4, max_steps=2)
    assert torch.allclose(table, torch.ones_like(table), atol=1e-12)
    moving = layer_similarity(metasgd, params, tasks, num_tasks=4, max_steps=2)
    assert (moving < 1 - 1e-6).all()


def test_layer_similarity_needs_layer_outputs_and_a_step():
    mlp = MAML(sinusoid_mlp(), inner_lr=0.01)
    with pytest.raises(TypeError, match="layer_outputs"):
        layer_similarity(mlp, mlp.init_meta_params(), ImageTasks(), num_tasks=1)
    alg = MAML(MODEL, inner_lr=0.5)
    with pytest.raises(ValueError, match="max_steps"):
        layer_similarity(alg, double_params(alg), ImageTasks(), num_tasks=1, max_steps=0)


def test_adapt_only_head_is_anil_and_all_layers_is_maml():
    sx, sy, _, _ = next(meta_test_tasks(MODEL, ImageTasks(), 1, dtype=torch.float64))
    params = double_params(MAML(MODEL))
    every = tuple(dict.fromkeys(layer_of(n) for n in params))
    pairs = [
        (AdaptOnly(MODEL, inner_lr=0.5, inner_steps=2), ANIL(MODEL, inner_lr=0.5, inner_steps=2)),
        (
            AdaptOnly(MODEL, inner_lr=0.5, inner_steps=2, layers=every),
            MAML(MODEL, inner_lr=0.5, inner_steps=2),
        ),
    ]
    for partial, reference in pairs:
        leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
        got, expected = partial.adapt(leaves, sx, sy), reference.adapt(leaves, sx, sy)
        for name in params:
            assert torch.allclose(got[name], expected[name], rtol=0, atol=1e-14)


def test_adapt_only_some_layers_freezes_the_others():
    alg = AdaptOnly(MODEL, inner_lr=0.5, layers=("block3", "head"))
    assert alg.adapt_names == (
        "block3.conv.weight",
        "block3.conv.bias",
        "block3.norm.weight",
        "block3.norm.bias",
        "head.weight",
        "head.bias",
    )
    sx, sy, _, _ = next(meta_test_tasks(MODEL, ImageTasks(), 1, dtype=torch.float64))
    params = {n: p.requires_grad_() for n, p in double_params(alg).items()}
    adapted = alg.adapt(params, sx, sy, first_order=True)
    for name in params:
        moved = (adapted[name] - params[name]).abs().max().item()
        if name not in alg.adapt_names:
            assert adapted[name] is params[name], name
        elif name == "block3.conv.bias":
            # a convolution's bias right before batch norm has a zero gradient (up to rounding)
            assert moved < 1e-12
        else:
            assert moved > 1e-6, name
    with pytest.raises(ValueError, match="block9"):
        AdaptOnly(MODEL, layers=("block9",))
    with pytest.raises(ValueError, match="at least one"):
        AdaptOnly(MODEL, layers=())
