"""Omniglot episodes made on the device: the same seed gives bitwise the same episodes with or
without ``device=``, the images are moved to the device once, and the CLIs build their samplers
on the run's device. On a small in-memory Omniglot; the CUDA tests skip without a GPU."""

from __future__ import annotations

import pytest
import torch
from test_omniglot_tasks import fake_omniglot

import metalearn_edu.evaluate_cli
import metalearn_edu.train_cli
from metalearn_edu.__main__ import main
from metalearn_edu.data import Omniglot
from metalearn_edu.tasks import OmniglotTasks
from metalearn_edu.tasks.episode import Episode
from metalearn_edu.tasks.omniglot import LEVELS

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ROTATIONS = ["augment", "classes", "none"]
FIELDS = ("support_x", "support_y", "query_x", "query_y")


@pytest.fixture(scope="module")
def data() -> Omniglot:
    return fake_omniglot()


def sampler(data: Omniglot, rotations: str = "augment", device=None) -> OmniglotTasks:
    return OmniglotTasks("train", 4, 2, 3, rotations, "lake", data=data, device=device)


def episodes(tasks: OmniglotTasks, seed: int = 7, batches: int = 3) -> list[Episode]:
    """Three consecutive meta-batches from one generator (the generator's state carries over)."""
    g = torch.Generator().manual_seed(seed)
    return [tasks.sample(5, g) for _ in range(batches)]


def assert_bitwise_equal(a: list[Episode], b: list[Episode]) -> None:
    for ea, eb in zip(a, b, strict=True):
        for name in FIELDS:
            x, y = getattr(ea, name).cpu(), getattr(eb, name).cpu()
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert torch.equal(x.view(torch.uint8), y.view(torch.uint8)), name  # bits, not values


def assert_on(episode: Episode, device: torch.device) -> None:
    for name in FIELDS:
        assert getattr(episode, name).device == device, name


@pytest.mark.parametrize("rotations", ROTATIONS)
@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_device_cpu_gives_the_same_bits_as_no_device(data, rotations, device):
    tasks = sampler(data, rotations, device)
    assert tasks._rotated.device == torch.device("cpu")
    assert_bitwise_equal(episodes(sampler(data, rotations)), episodes(tasks))


@pytest.mark.parametrize("rotations", ROTATIONS)
def test_the_lookup_a_gpu_uses_gives_the_same_bits_as_dividing(data, rotations):
    assert torch.equal(LEVELS, torch.arange(256).float() / 255)
    looked_up = sampler(data, rotations, "cpu")
    looked_up._levels = LEVELS  # what a non-CPU device does, run here on the CPU
    assert_bitwise_equal(episodes(sampler(data, rotations)), episodes(looked_up))


def test_draw_then_gather_is_sample(data):
    tasks = sampler(data, device="cpu")
    rows = tasks.draw(5, torch.Generator().manual_seed(7))
    assert rows.dtype == torch.int64 and rows.shape == (5, 4, 2 + 3)
    assert rows.device == torch.device("cpu")
    x = tasks.gather(rows)
    assert x.shape == (5, 4, 5, 1, 28, 28) and x.dtype == torch.float32
    e = episodes(tasks, batches=1)[0]
    assert torch.equal(x[:, :, :2].reshape(5, 8, 1, 28, 28), e.support_x)
    assert torch.equal(x[:, :, 2:].reshape(5, 12, 1, 28, 28), e.query_x)


def test_labels_are_fresh_tensors_every_call(data):
    tasks = sampler(data, device="cpu")
    g = torch.Generator().manual_seed(0)
    first = tasks.sample(1, g)  # one task: a view of the stored labels would look contiguous
    first.support_y.fill_(9)
    first.query_y.fill_(9)
    second = tasks.sample(2, g)
    assert second.support_y.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]] * 2
    assert second.query_y.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]] * 2


def test_sample_does_not_move_the_images(data, monkeypatch):
    tasks = sampler(data, device="cpu")
    table, pointer = tasks._rotated, tasks._rotated.data_ptr()
    moved = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        if self.numel() >= table.numel():
            moved.append(tuple(self.shape))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    episodes(tasks)
    assert moved == []
    assert tasks._rotated is table and tasks._rotated.data_ptr() == pointer


def test_evaluate_accepts_episodes_already_on_the_device(data):
    from metalearn_edu.algorithms import MAML
    from metalearn_edu.evaluation import evaluate
    from metalearn_edu.models import Conv4

    maml = MAML(Conv4(ways=4), inner_lr=0.4, inner_steps=1)
    params = maml.init_meta_params(torch.Generator().manual_seed(0))
    results = [
        evaluate(maml, params, sampler(data, device=d), num_tasks=3, batch_size=2, device="cpu")
        for d in (None, "cpu")
    ]
    assert results[0] == results[1]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_clis_build_their_tasks_on_the_run_device(command, tmp_path, monkeypatch):
    module = metalearn_edu.train_cli if command == "train" else metalearn_edu.evaluate_cli
    ckpt = tmp_path / "run.pt"
    tiny = ["--preset", "sinusoid", "--meta-batch-size", "2", "--no-progress"]
    if command == "evaluate":
        main(["train", *tiny, "--iterations", "1", "--eval-tasks", "0", "--checkpoint", str(ckpt)])
    devices = []
    build_tasks = module.build_tasks

    def spy(config, device=None):
        devices.append(device)
        return build_tasks(config, device)

    monkeypatch.setattr(module, "build_tasks", spy)
    if command == "train":
        argv = ["train", *tiny, "--iterations", "1", "--eval-tasks", "0"]
    else:
        argv = ["evaluate", "--tasks", "2"]
    assert main([*argv, "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
    assert devices == ["cpu"]


@cuda
@pytest.mark.parametrize("rotations", ROTATIONS)
def test_cuda_gives_the_same_bits_as_the_cpu(data, rotations):
    tasks = sampler(data, rotations, "cuda")
    assert tasks._rotated.device.type == "cuda"
    got = episodes(tasks)
    for e in got:
        assert_on(e, tasks._rotated.device)
    assert_bitwise_equal(episodes(sampler(data, rotations)), got)


@cuda
def test_cuda_table_stays_put_and_labels_are_right(data):
    tasks = sampler(data, device="cuda")
    table, pointer = tasks._rotated, tasks._rotated.data_ptr()
    e = episodes(tasks)[-1]
    assert tasks._rotated is table and tasks._rotated.data_ptr() == pointer
    assert e.support_y.dtype == torch.int64
    assert e.support_y.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]] * 5
    assert e.query_y.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]] * 5


@cuda
def test_cuda_gather_accepts_rows_already_on_the_gpu(data):
    tasks = sampler(data, device="cuda")
    rows = tasks.draw(5, torch.Generator().manual_seed(7))
    assert torch.equal(tasks.gather(rows), tasks.gather(rows.cuda()))
