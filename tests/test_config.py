import random

import numpy as np
import pytest
import torch

from metalearn_edu import config


@pytest.mark.parametrize(
    ("value", "fast"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_fast_mode_reads_the_environment(monkeypatch, value, fast):
    monkeypatch.setenv(config.FAST_ENV, value)
    assert config.fast_mode() is fast
    assert config.size(1000, fast=10) == (10 if fast else 1000)


def test_fast_mode_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv(config.FAST_ENV, "maybe")
    with pytest.raises(ValueError, match="METALEARN_EDU_FAST='maybe' is not understood"):
        config.fast_mode()


def test_size_rejects_non_positive_counts():
    with pytest.raises(ValueError, match="positive"):
        config.size(0, fast=1)


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "cache"))
    assert config.data_dir() == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir()


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        g = config.seed_everything(7)
        return (
            random.random(),
            np.random.rand(),  # noqa: NPY002 (the legacy global generator is seeded too)
            torch.rand(1).item(),
            torch.rand(1, generator=g).item(),
        )

    assert draw() == draw()
    with pytest.raises(ValueError, match="non-negative integer"):
        config.seed_everything(-1)
