"""Triton kernels for the hot loops of meta-learning, each beside its PyTorch reference.

See :mod:`metalearn_edu.kernels._dispatch` for when a kernel runs and when its reference does.
"""

import importlib
from typing import Any

from metalearn_edu.kernels._dispatch import interpreting, triton_available, use_triton

# The LSTM kernels' references are the library's own learned optimizer and Meta-LSTM, which in
# turn call the kernels: their names are imported on first use, so that importing this package
# (as the inner loop does) does not import those higher layers, nor Triton.
_LAZY = {
    "LSTMOptimizerStep": "lstm_optimizer_step",
    "lstm_optimizer_step_reference": "lstm_optimizer_step",
    "lstm_optimizer_step_triton": "lstm_optimizer_step",
    "MetaLSTMStep": "meta_lstm_step",
    "meta_lstm_step_reference": "meta_lstm_step",
    "meta_lstm_step_triton": "meta_lstm_step",
    "inner_update_reference": "inner_update",
    "fused_inner_update": "inner_update",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["interpreting", "triton_available", "use_triton", *_LAZY]
