"""The arithmetic a meta-gradient runs in: strict float32, TF32 or bfloat16 mixed precision.

A float32 number has 8 exponent bits and 23 stored mantissa bits (a relative rounding error of
2^-24 ≈ 6e-8). Two cheaper formats keep the exponent, hence the range, and drop mantissa bits:

- **TF32** (NVIDIA Ampere and later): the tensor cores round the *inputs* of a matrix product or
  convolution to 10 mantissa bits (≈ 5e-4 relative) and accumulate in float32. Tensors stay
  float32 in memory; only those two operations change.
- **bfloat16**: 7 mantissa bits (≈ 4e-3 relative), half the memory traffic. Here it is used as
  mixed precision (Micikevicius et al. 2018, "Mixed precision training", ICLR): under
  ``torch.autocast`` the matrix products and convolutions run in bfloat16, while the parameters,
  the meta-gradient and the optimiser state stay float32, and the losses are computed in float32
  (autocast runs ``cross_entropy`` and ``mse_loss`` in float32; Conv4 returns float32 logits,
  so accuracies are float32 too).
  bfloat16 has float32's range, so no loss scaling is needed (that paper's loss scaling is for
  float16's narrow exponent).

Why second-order MAML is a sensitive case: its meta-gradient goes through the inner loop's
gradient, ∇_θ L(θ − α∇_θ L^support(θ)) = (I − α∇²_θ L^support) ∇_θ' L^query, so every iteration
computes Hessian-vector products, a derivative of a derivative, each rounded again. Whether the
cheaper formats still learn as well is a measured question: ``tests/test_precision.py`` compares
bf16 meta-gradients with float32 and float64 ones, and meta-trains on real Omniglot in float32
and bf16 and requires the test accuracies to agree; ``python -m metalearn_edu train --precision``
and ``python -m metalearn_edu.bench --precision`` choose one; float32 is the default.

The three precisions of :func:`precision_context`:

- ``"float32"``: strict IEEE float32, TF32 off for matrix products *and* convolutions. This is
  stricter than PyTorch's default, which leaves cuDNN convolutions in TF32
  (``torch.backends.cudnn.conv.fp32_precision == "tf32"``): here it is the baseline that the
  accuracy test compares the others with, so it must not already be TF32.
- ``"tf32"``: TF32 for matrix products and convolutions; CUDA only (elsewhere there is no TF32,
  and a run labelled tf32 would silently be float32).
- ``"bf16"``: ``torch.autocast(device_type, dtype=torch.bfloat16)``, with the float32 flags of
  ``"float32"`` for what autocast leaves in float32.

How the flags are set matters. PyTorch keeps two sets of TF32 settings, the legacy ones
(``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``) and the
per-backend ``fp32_precision`` ones, and cuBLAS, cuDNN and ``torch.compile`` check that the two
agree whenever they ask whether TF32 is allowed ("you have used mix of the legacy and new
APIs" otherwise). Setting only ``torch.backends.cuda.matmul.fp32_precision = "tf32"`` leaves the
legacy matmul precision at "highest", so that check fails (seen with torch 2.13: reading
``torch.backends.cuda.matmul.allow_tf32`` then raises). On CUDA the context therefore sets the
legacy flags, whose setters write both sets together; every getter reads without error inside
and after the context (``tests/test_precision.py`` checks all of them). On a CPU it sets
``torch.backends.mkldnn``'s ``fp32_precision`` to "ieee", which agrees with the legacy "highest".
Everything is restored on exit, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

PRECISIONS = ("float32", "tf32", "bf16")

# the per-backend float32 settings each device type's context reads (and, on a CPU, sets)
_FLAGS = {
    "cuda": (
        ("torch.backends.cuda.matmul", torch.backends.cuda.matmul),
        ("torch.backends.cudnn.conv", torch.backends.cudnn.conv),
    ),
    "cpu": (
        ("torch.backends.mkldnn.matmul", torch.backends.mkldnn.matmul),
        ("torch.backends.mkldnn.conv", torch.backends.mkldnn.conv),
    ),
}
# on CUDA, the legacy TF32 switches: their setters keep both sets of settings in agreement
_CUDA_SWITCHES = (torch.backends.cuda.matmul, torch.backends.cudnn)


def check_precision(precision: str, device_type: str | None = None) -> None:
    """Raise a ``ValueError`` that says what to use instead if ``precision`` is not one of
    :data:`PRECISIONS` or (``device_type`` given) cannot run on that kind of device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "tf32" and device_type is not None and device_type != "cuda":
        raise ValueError(
            f"precision 'tf32' needs a CUDA device (TF32 is a mode of NVIDIA tensor cores), but "
            f"the computation runs on a {device_type!r} device: use 'float32', or 'bf16' for "
            "reduced precision there."
        )


def fp32_settings(device_type: str) -> dict[str, str]:
    """The current ``fp32_precision`` of each setting :func:`precision_context` changes."""
    return {name: owner.fp32_precision for name, owner in _FLAGS.get(device_type, ())}


@contextmanager
def precision_context(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """Run the body in ``precision`` ("float32", "tf32" or "bf16", see the module docstring) on
    devices of ``device_type`` ("cpu", "cuda"); every global setting is restored on exit."""
    check_precision(precision, device_type)
    if device_type == "cuda":
        try:
            saved = [switch.allow_tf32 for switch in _CUDA_SWITCHES]
        except RuntimeError as error:  # set elsewhere in this process with both APIs, disagreeing
            raise RuntimeError(
                f"this process's TF32 settings disagree ({error}); set them with one API only "
                "(or not at all) before using metalearn_edu's precision option."
            ) from None
        setting, restore = "allow_tf32", saved
        tf32 = precision == "tf32"
        owners, values = _CUDA_SWITCHES, [tf32, tf32]
    else:
        owners = [owner for _, owner in _FLAGS.get(device_type, ())]
        setting, restore = "fp32_precision", [owner.fp32_precision for owner in owners]
        values = ["ieee"] * len(owners)
    try:
        for owner, value in zip(owners, values, strict=True):
            setattr(owner, setting, value)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        for owner, value in zip(owners, restore, strict=True):
            setattr(owner, setting, value)
