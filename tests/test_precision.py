"""Precision (metalearn_edu/precision.py): float32, TF32 and bf16 meta-gradients, and whether
meta-training still reaches the same accuracy in them.

What was measured on this CPU (torch 2.13, avx512_bf16), and the tolerances taken from it:

- Sinusoid MLP, second-order MAML, meta-batch 25: the bf16 meta-gradient is within 1.6e-3
  (relative norm) of float64's over 8 seeds, cosine 1.000000; loop and vmap agree to 3.5e-4.
- Conv4 on Omniglot-shaped tasks: bf16 is 35-53% away from float64 (cosine 0.86-0.94), loop and
  vmap 8-14% apart. This is not bf16 arithmetic failing: the meta-gradient of this ReLU network
  with batch norm is only piecewise smooth in θ (in float64, a random relative change of θ of
  1e-6 moves it by 1e-5, one of 1e-5 already by 5e-3: units switch on or off), so rounding *only
  the parameters* to bf16 and computing exactly in float64 already moves it 27-47%. The test
  compares bf16 with that floor: measured 0.94-1.67 times it.
- Whether that matters is the accuracy test's question: meta-trained on real Omniglot from the
  same seed, float32 and bf16 reach the same test accuracy. The test's own run (400 tasks):
  untrained 49.1%, float32 68.5 ± 1.3%, bf16 68.0 ± 1.4%, bf16 - float32 = -0.5 ± 0.6 points
  (paired), about 40 s on one thread. Four seeds on 300 tasks: -0.6, +0.1, -0.5, +0.5 points,
  each inside its paired 95% interval of about 0.75; two float32 runs that differ only in their
  seed differ by up to 1.0 point.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _maml_helpers import one_thread

from metalearn_edu import bench
from metalearn_edu.__main__ import main
from metalearn_edu.algorithms import MAML, Reptile
from metalearn_edu.config import OMNIGLOT_ENV
from metalearn_edu.data import load_omniglot
from metalearn_edu.data.omniglot import ARCHIVES
from metalearn_edu.evaluation import evaluate, meta_test_tasks, score_task
from metalearn_edu.models import Conv4, sinusoid_mlp
from metalearn_edu.precision import PRECISIONS, fp32_settings, precision_context
from metalearn_edu.presets import PRESETS, build_algorithm
from metalearn_edu.tasks import OmniglotTasks
from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.sinusoid import SinusoidTasks
from metalearn_edu.training import meta_train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
ROOT = Path(os.environ[OMNIGLOT_ENV]) if os.environ.get(OMNIGLOT_ENV) else SHARED


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


# --- the context manager ---------------------------------------------------------------------
def tf32_state() -> dict[str, object]:
    """Every TF32 getter PyTorch has, legacy and per-backend. cuBLAS, cuDNN and torch.compile ask
    the same C++ questions when they run, and raise if the two sets of settings disagree."""
    return {
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        **fp32_settings("cuda"),
        **fp32_settings("cpu"),
    }


def test_every_setting_reads_consistently_inside_and_comes_back():
    before = tf32_state()
    assert before["cudnn.allow_tf32"]  # PyTorch's default: TF32 convolutions
    with precision_context("float32", "cuda"):
        state = tf32_state()  # raises if the settings disagree
        assert not state["cuda.matmul.allow_tf32"] and not state["cudnn.allow_tf32"]
        assert state["float32_matmul_precision"] == "highest"
        assert not torch.is_autocast_enabled("cuda")
    with precision_context("tf32", "cuda"):
        state = tf32_state()
        assert state["cuda.matmul.allow_tf32"] and state["cudnn.allow_tf32"]
        assert set(fp32_settings("cuda").values()) == {"tf32"}
        assert state["float32_matmul_precision"] == "high"
    with precision_context("float32", "cpu"):
        assert set(tf32_state()[k] for k in fp32_settings("cpu")) == {"ieee"}
    after = tf32_state()
    # what the switches say comes back; a per-backend "none" (inherit) may read as the explicit
    # value it resolved to, which means the same
    for key in ("cuda.matmul.allow_tf32", "cudnn.allow_tf32", "float32_matmul_precision"):
        assert after[key] == before[key]
    assert fp32_settings("cpu") == {k: before[k] for k in fp32_settings("cpu")}


def test_settings_come_back_after_an_exception_too():
    before = tf32_state()
    for precision, device_type in [("tf32", "cuda"), ("bf16", "cpu"), ("float32", "cpu")]:
        with pytest.raises(RuntimeError, match="inside"):
            with precision_context(precision, device_type):
                raise RuntimeError("inside")
        after = tf32_state()
        assert {k: after[k] for k in list(after)[:3]} == {k: before[k] for k in list(before)[:3]}
        assert fp32_settings("cpu") == {k: before[k] for k in fp32_settings("cpu")}
        assert not torch.is_autocast_enabled("cpu")


def test_the_per_backend_api_alone_would_leave_the_settings_disagreeing():
    """Why the context sets the legacy switches on CUDA: the per-backend matmul setting alone
    makes PyTorch's own consistency check fail (the check cuBLAS runs)."""
    saved = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
            _ = torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved
    tf32_state()  # and it reads again


def test_bf16_is_autocast_with_float32_losses():
    x, w = torch.randn(6, 4), torch.randn(5, 4)
    with precision_context("bf16", "cpu"):
        assert (
            torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )
        logits = F.linear(x, w)
        assert logits.dtype == torch.bfloat16
        assert F.cross_entropy(logits, torch.arange(6) % 5).dtype == torch.float32
        assert F.mse_loss(logits, torch.zeros(6, 5)).dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")


def test_tf32_on_a_cpu_and_unknown_names_are_refused():
    with pytest.raises(
        ValueError, match=r"'tf32' needs a CUDA device.*'cpu'.*'float32', or 'bf16'"
    ):
        with precision_context("tf32", "cpu"):
            pass
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'tf32', 'bf16'\)"):
        with precision_context("fp16", "cpu"):
            pass
    assert PRECISIONS == ("float32", "tf32", "bf16")


def test_maml_checks_its_precision_and_layout():
    with pytest.raises(ValueError, match="precision must be one of"):
        MAML(sinusoid_mlp(), precision="half")
    with pytest.raises(ValueError, match=r"Reptile computes its own meta-gradient.*float32 only"):
        Reptile(sinusoid_mlp(), precision="bf16")
    with pytest.raises(ValueError, match=r"MLP has no channels_last option.*Conv4"):
        MAML(sinusoid_mlp(), channels_last=True)
    with pytest.raises(ValueError, match="channels_last must be True or False"):
        MAML(Conv4(), channels_last=1)
    assert MAML(Conv4(), channels_last=True).model.channels_last  # the model is told
    episode = SinusoidTasks(5, 5).sample(2, torch.Generator().manual_seed(0))
    algorithm = MAML(sinusoid_mlp(), precision="tf32")
    with pytest.raises(ValueError, match="'tf32' needs a CUDA device"):
        algorithm.meta_gradient(algorithm.init_meta_params(), episode)


# --- meta-gradients in bf16 ------------------------------------------------------------------
def omniglot_shaped(tasks: int, seed: int, queries: int = 5) -> Episode:
    """5-way 1-shot episodes of 28x28 binary images (15% ink, as Omniglot's strokes)."""
    g = torch.Generator().manual_seed(seed)

    def ink(n):
        return (torch.rand(tasks, n, 1, 28, 28, generator=g) < 0.15).float()

    def labels(k):
        return torch.arange(5).repeat_interleave(k).expand(tasks, -1).contiguous()

    return Episode(ink(5), labels(1), ink(5 * queries), labels(queries))


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    # conv biases are followed by batch norm: their exact gradient is 0, only rounding is left
    return torch.cat(
        [g.double().flatten() for n, g in grads.items() if not n.endswith("conv.bias")]
    )


def rel_error(grads, reference) -> float:
    a, b = _flat(grads), _flat(reference)
    return ((a - b).norm() / b.norm()).item()


def cosine(grads, reference) -> float:
    return F.cosine_similarity(_flat(grads), _flat(reference), dim=0).item()


def float64_grad(algorithm: MAML, params, episode: Episode, round_to_bf16: bool = False):
    params = {n: (p.bfloat16() if round_to_bf16 else p).double() for n, p in params.items()}
    return algorithm.meta_gradient(params, episode.to(None, torch.float64))[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_sinusoid_meta_gradient_is_close_to_float64(seed):
    episode = SinusoidTasks(10, 10).sample(25, torch.Generator().manual_seed(seed))
    algorithms = {e: MAML(sinusoid_mlp(), execution=e, precision="bf16") for e in ("loop", "vmap")}
    params = algorithms["loop"].init_meta_params(torch.Generator().manual_seed(seed))
    exact = float64_grad(MAML(sinusoid_mlp()), params, episode)
    grads = {e: a.meta_gradient(params, episode)[0] for e, a in algorithms.items()}
    for g in grads.values():
        assert all(v.dtype == torch.float32 for v in g.values())  # meta-gradients stay float32
        assert rel_error(g, exact) < 5e-3  # measured at most 1.6e-3
        assert cosine(g, exact) > 0.9999
    assert rel_error(grads["loop"], grads["vmap"]) < 1e-3  # measured at most 3.5e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_conv4_meta_gradient_is_within_the_bf16_rounding_floor(seed):
    episode = omniglot_shaped(2, seed)
    model = Conv4(hidden=16)
    algorithms = {e: MAML(model, 0.4, execution=e, precision="bf16") for e in ("loop", "vmap")}
    params = algorithms["loop"].init_meta_params(torch.Generator().manual_seed(seed))
    exact = float64_grad(MAML(model, 0.4), params, episode)
    floor = rel_error(float64_grad(MAML(model, 0.4), params, episode, round_to_bf16=True), exact)
    assert floor > 0.1  # the meta-gradient really is this sensitive (measured 0.27-0.47)
    grads, metrics = {}, {}
    for execution, algorithm in algorithms.items():
        grads[execution], metrics[execution] = algorithm.meta_gradient(params, episode)
        assert rel_error(grads[execution], exact) < 2.5 * floor  # measured 0.94-1.67 x floor
        assert cosine(grads[execution], exact) > 0.75  # measured 0.86-0.94
        assert all(v.dtype == torch.float32 for v in grads[execution].values())
        # accuracies come from float32 logits: exact multiples of 1/25 (25 queries per task)
        assert metrics[execution]["post_accuracy"] * 50 == pytest.approx(
            round(metrics[execution]["post_accuracy"] * 50), abs=1e-4
        )
    assert rel_error(grads["loop"], grads["vmap"]) < 0.25  # measured 0.08-0.14


def test_compiled_bf16_does_not_recompile_during_training():
    """The compiled execution under autocast: new batches and parameter values reuse the graph."""
    import torch._dynamo

    from metalearn_edu.models import MLP

    algorithm = MAML(MLP((1, 8, 1)), inner_lr=0.05, execution="compiled", precision="bf16")
    params = algorithm.init_meta_params(torch.Generator().manual_seed(5))
    tasks = SinusoidTasks(5, 5)
    algorithm.meta_gradient(params, tasks.sample(4, torch.Generator().manual_seed(0)))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in (1, 2, 3):
            params = {n: p + 0.01 * seed for n, p in params.items()}
            episode = tasks.sample(4, torch.Generator().manual_seed(seed))
            grads, _ = algorithm.meta_gradient(params, episode)
            assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())


# --- channels-last ---------------------------------------------------------------------------
@pytest.mark.parametrize("execution", ["loop", "functional", "vmap"])
@pytest.mark.parametrize(
    "downsample, transductive", [("stride", True), ("stride", False), ("maxpool", True)]
)
def test_channels_last_gives_the_same_meta_gradient(execution, downsample, transductive):
    model = Conv4(hidden=16, downsample=downsample, transductive=transductive)
    plain = MAML(model, 0.4, execution=execution)
    nhwc = MAML(model, 0.4, execution=execution, channels_last=True)
    params = plain.init_meta_params(torch.Generator().manual_seed(0))
    episode = omniglot_shaped(2, seed=0)
    g64 = float64_grad(plain, params, episode)
    assert rel_error(float64_grad(nhwc, params, episode), g64) < 1e-12  # measured 4e-15
    if (downsample, transductive) == ("stride", True):  # the Omniglot setting, in float32
        g32 = plain.meta_gradient(params, episode)[0]
        # measured at most 8.3e-7 over 8 seeds: float32's own rounding (float32 vs float64: 1e-6)
        assert rel_error(nhwc.meta_gradient(params, episode)[0], g32) < 2e-6


def test_channels_last_activations_are_nhwc_outside_vmap():
    model = Conv4(hidden=8, channels_last=True)
    params = model.init(torch.Generator().manual_seed(0))
    x = omniglot_shaped(1, seed=0).query_x[0]
    outputs = model.layer_outputs(params, x)
    for name in ("block1", "block2", "block3"):  # block0's input has one channel: no layout
        assert outputs[name].is_contiguous(memory_format=torch.channels_last), name
    plain = Conv4(hidden=8).forward(params, x)
    torch.testing.assert_close(outputs["head"], plain, rtol=1e-5, atol=1e-6)


# --- evaluation, presets, command line, benchmark --------------------------------------------
def test_evaluation_runs_in_the_algorithms_precision():
    tasks = SinusoidTasks(10, 10)
    params = MAML(sinusoid_mlp()).init_meta_params(torch.Generator().manual_seed(0))
    f32 = evaluate(MAML(sinusoid_mlp()), params, tasks, num_tasks=10)
    bf16 = evaluate(MAML(sinusoid_mlp(), precision="bf16"), params, tasks, num_tasks=10)
    assert bf16["loss"] != f32["loss"] and bf16["loss"] == pytest.approx(f32["loss"], rel=1e-2)
    with pytest.raises(ValueError, match="'tf32' needs a CUDA device"):
        evaluate(MAML(sinusoid_mlp(), precision="tf32"), params, tasks, num_tasks=2)


def test_presets_read_the_speed_settings():
    config = {**PRESETS["omniglot-5w1s"], "hidden": 8}
    algorithm = build_algorithm(config)
    assert (algorithm.precision, algorithm.channels_last, algorithm.compile_mode) == (
        "float32", False, None
    )  # fmt: skip
    fast = {"precision": "bf16", "channels_last": True, "compile_mode": "reduce-overhead"}
    algorithm = build_algorithm({**config, **fast})
    assert (algorithm.precision, algorithm.compile_mode) == ("bf16", "reduce-overhead")
    assert algorithm.model.channels_last
    with pytest.raises(ValueError, match=r"Meta-LSTM runs in float32.*'precision': 'bf16'"):
        build_algorithm({**PRESETS["metalstm-omniglot-5w1s"], "precision": "bf16"})


TINY = [
    "train", "--preset", "sinusoid", "--iterations", "3", "--meta-batch-size", "3",
    "--eval-tasks", "4", "--validate-every", "0", "--no-progress",
]  # fmt: skip


def test_cli_trains_in_bf16_and_records_the_settings(tmp_path):
    ckpt = tmp_path / "run.pt"
    argv = [*TINY, "--precision", "bf16", "--sync-every", "2", "--compile-mode", "default"]
    assert main([*argv, "--checkpoint", str(ckpt)]) == 0
    result = json.loads(ckpt.with_suffix(".json").read_text())
    assert result["config"]["precision"] == "bf16"
    assert result["config"]["sync_every"] == 2 and result["config"]["compile_mode"] == "default"
    assert result["iterations_done"] == 3 and math.isfinite(result["test"]["loss"])
    assert main([*TINY, "--checkpoint", str(tmp_path / "plain.pt")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["config"]["precision"] == "float32"  # recorded even when not asked for


def test_cli_refuses_tf32_on_a_cpu_before_training(tmp_path):
    with pytest.raises(SystemExit, match=r"--precision tf32 --device cpu: .*needs a CUDA device"):
        main([*TINY, "--precision", "tf32", "--checkpoint", str(tmp_path / "run.pt")])
    assert not (tmp_path / "run.pt").exists()
    with pytest.raises(ValueError, match="MLP has no channels_last option"):
        main([*TINY, "--channels-last", "--checkpoint", str(tmp_path / "run.pt")])


def test_benchmark_reads_and_times_precisions(capsys):
    assert bench.parse_precisions("float32,tf32+channels-last,bf16+matmul+channels-last") == [
        {"precision": "float32", "channels_last": False, "conv": "conv2d"},
        {"precision": "tf32", "channels_last": True, "conv": "conv2d"},
        {"precision": "bf16", "channels_last": True, "conv": "matmul"},
    ]
    assert bench.parse_precisions("bf16", channels_last=True) == [
        {"precision": "bf16", "channels_last": True, "conv": "conv2d"}
    ]
    for wrong in ("float32,fp8", "tf32+winograd"):
        with pytest.raises(ValueError, match="--precision takes names from"):
            bench.parse_precisions(wrong)
    spec = {"workload": "sinusoid", "meta_batch": 3, "inner_steps": 1, "first_order": False}
    assert bench.time_variant({**spec, "precision": "bf16"}, "vmap", "cpu", 1)["it_per_s"] > 0
    with pytest.raises(SystemExit):
        bench.main(["--precision", "tf32", "--device", "cpu"])
    assert "error: precision 'tf32' needs a CUDA device" in capsys.readouterr().err


# --- accuracy holds: short meta-training runs on real Omniglot --------------------------------
ITERATIONS, META_BATCH, HIDDEN, TEST_TASKS = 200, 8, 32, 400
# bf16 or tf32 may differ from float32 by the paired 95% half-width plus one point: two float32
# runs that differ only in their seed were measured up to 1.0 point apart on the same test tasks,
# so a precision is not asked to match float32 more closely than float32 matches itself.
MARGIN = 0.01


@pytest.fixture(scope="module")
def omniglot():
    """The real images: from the cache in data/cache when it is there (the device tool can carry
    it), else built from the archives in $METALEARN_EDU_OMNIGLOT or ../shared/data/omniglot."""
    root = ROOT if all((ROOT / name).is_file() for name in ARCHIVES) else None
    try:
        return load_omniglot(root, download_missing=False, progress=False)
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"no Omniglot here ({error}); set {OMNIGLOT_ENV} or carry data/cache")


def test_accuracy_holds_in_bf16_on_cpu(omniglot):
    accuracy_holds(omniglot, "cpu", ("bf16",))


@cuda
def test_accuracy_holds_in_tf32_and_bf16_on_cuda(omniglot):
    with precision_context("float32", "cuda"):  # the card really does TF32 when asked
        a, b = torch.randn(256, 256, device="cuda"), torch.randn(256, 256, device="cuda")
        exact = a.double() @ b.double()
        strict = ((a @ b).double() - exact).abs().max().item()
    with precision_context("tf32", "cuda"):
        tf32 = ((a @ b).double() - exact).abs().max().item()
    assert tf32 > 10 * strict
    accuracy_holds(omniglot, "cuda", ("tf32", "bf16"))


def accuracy_holds(omniglot, device: str, precisions: tuple[str, ...]) -> None:
    """Meta-train in float32 and in each of ``precisions`` from the same seed, score all of them
    on the same test tasks, and require the same accuracy (see ``MARGIN``)."""
    train = OmniglotTasks("train", ways=5, shots=1, queries=5, data=omniglot)
    test = OmniglotTasks("test", ways=5, shots=1, queries=5, data=omniglot)
    tasks = list(meta_test_tasks(Conv4(hidden=HIDDEN), test, TEST_TASKS, seed=7, device=device))

    def test_accuracies(algorithm: MAML, params) -> torch.Tensor:
        return torch.stack(
            [score_task(algorithm, params, *t, inner_steps=3)["accuracy"] for t in tasks]
        ).double()

    accuracies = {}
    for precision in ("float32", *precisions):
        algorithm = MAML(Conv4(hidden=HIDDEN), 0.4, execution="vmap", precision=precision)
        state = meta_train(
            algorithm, train, ITERATIONS, meta_batch_size=META_BATCH, device=device, progress=False
        )
        accuracies[precision] = test_accuracies(algorithm, state.meta_params)
    start = MAML(Conv4(hidden=HIDDEN), 0.4)  # where every run started (meta_train's seed 0)
    initial = start.init_meta_params(torch.Generator().manual_seed(0))
    untrained = test_accuracies(start, {n: p.to(device) for n, p in initial.items()})
    # measured on the CPU: untrained 49% (3 steps adapt even a random network), float32 after
    # 200 iterations 69%; chance is 20%. The run must have learned, or the test proves nothing.
    assert accuracies["float32"].mean() > 0.2 + 0.3
    assert accuracies["float32"].mean() > untrained.mean() + 0.1
    for precision in precisions:
        d = accuracies[precision] - accuracies["float32"]  # paired: the same tasks
        half_width = 1.96 * d.std(unbiased=False).item() / math.sqrt(len(d))
        assert abs(d.mean().item()) <= half_width + MARGIN, (
            f"{precision}: test accuracy {accuracies[precision].mean():.4f} against float32's "
            f"{accuracies['float32'].mean():.4f}: {d.mean():+.4f} ± {half_width:.4f} (paired)"
        )
