"""Triton kernels for the hot loops of meta-learning, each beside its PyTorch reference.

See :mod:`metalearn_edu.kernels._dispatch` for when a kernel runs and when its reference does.
"""

from metalearn_edu.kernels._dispatch import interpreting, triton_available, use_triton

__all__ = ["interpreting", "triton_available", "use_triton"]
