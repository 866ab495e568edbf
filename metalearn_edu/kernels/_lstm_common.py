"""Triton building blocks shared by the two coordinate-wise LSTM kernels
(:mod:`.lstm_optimizer_step` and :mod:`.meta_lstm_step`).

Layout. One program handles ``BLOCK`` coordinates (rows). A layer's hidden state is a register tile
``[BLOCK, HP]``: ``HP`` is the hidden size ``H`` rounded up to a power of two, at least 16 (the
smallest ``tl.dot`` operand), so 20 units live in a 32-wide tile. The gates are kept as four
separate tiles (i, f, g, o: the block order of ``torch.nn.LSTMCell``), each the product of the
layer's input with one gate block of the shared weights, loaded transposed and zero padded:

    a_i = x W_ih[0:H]^T + h W_hh[0:H]^T + b[0:H],   ...,   a_o = ... W[3H:4H]^T ...

Zero padding is exact: a padded column has pre-activation 0, so σ = ½, tanh = 0, c' = ½·0 + ½·0 = 0
and h' = ½·tanh(0) = 0; it contributes nothing to the next product because the padded weight rows
and columns are 0 too.

Without Triton (it ships for Linux only) ``jit`` leaves the functions as plain Python: they are
never launched, since :func:`~._dispatch.use_triton` then always chooses the reference.
"""

from __future__ import annotations

import math

import torch

try:
    import triton
    import triton.language as tl

    jit = triton.jit
except ImportError:  # pragma: no cover - exercised on platforms without Triton
    triton = None
    tl = None

    def jit(fn):  # type: ignore[no-redef]
        return fn


MIN_DOT = 16  # the smallest M, N and K of tl.dot


def padded_width(hidden: int) -> int:
    """The register width of a hidden state of ``hidden`` units: a power of two, at least 16."""
    return max(MIN_DOT, 1 << math.ceil(math.log2(hidden)))


def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉: the number of blocks of ``b`` coordinates that cover ``a``."""
    return -(-a // b)


def default_programs(device: torch.device, num_blocks: int) -> int:
    """The backward passes' grid: two persistent programs per streaming multiprocessor on a GPU
    (each writes one partial sum of the weight gradients), 4 in the interpreter; never more
    than there are blocks, never fewer than one."""
    if device.type == "cuda":
        per_device = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        per_device = 4
    return max(1, min(num_blocks, per_device))


@jit
def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}), written with z = e^{−|x|} ≤ 1 so that nothing overflows:
    σ(x) = 1 / (1 + z) for x ≥ 0 and z / (1 + z) for x < 0."""
    z = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0, z) / (1.0 + z)


@jit
def tanh(x):
    """tanh(x) = 2σ(2x) − 1 (portable: the interpreter has no tanh intrinsic)."""
    return 2.0 * sigmoid(2.0 * x) - 1.0


@jit
def log_sign_features(x, p, threshold, exp_p):
    """Andrychowicz et al. App. A: (log|x|/p, sgn x) if |x| ≥ e^{−p}, else (−1, e^p x)."""
    large = tl.abs(x) >= threshold
    magnitude = tl.where(large, tl.log(tl.maximum(tl.abs(x), threshold)) / p, -1.0)
    sign = tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))
    return magnitude, tl.where(large, sign, exp_p * x)


@jit
def log_sign_derivatives(x, p, threshold, exp_p):
    """d/dx of the two features, as autograd differentiates :func:`~.preprocessing.log_sign`:
    (1/(p x), 0) on the logarithmic branch, (0, e^p) on the linear one."""
    large = tl.abs(x) >= threshold
    safe = tl.where(large, x, 1.0)
    return tl.where(large, 1.0 / (p * safe), 0.0), tl.where(large, 0.0, exp_p)


@jit
def row_offsets(block, N, H, BLOCK: tl.constexpr, HP: tl.constexpr):
    """Rows of this block; offsets and mask of its ``[BLOCK, HP]`` tile of an ``[N, H]`` state."""
    rows = block * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, HP)
    offsets = rows.to(tl.int64)[:, None] * H + cols[None, :]
    mask = (rows < N)[:, None] & (cols < H)[None, :]
    return rows, offsets, mask


@jit
def load_gate_t(w_ptr, g, H, K, KP: tl.constexpr, HP: tl.constexpr):
    """Gate block g of a ``[4H, K]`` weight, transposed: ``W[gH:(g+1)H, :K]^T`` as ``[KP, HP]``."""
    k = tl.arange(0, KP)[:, None]
    j = tl.arange(0, HP)[None, :]
    return tl.load(w_ptr + (g * H + j) * K + k, mask=(k < K) & (j < H), other=0.0)


@jit
def load_gate(w_ptr, g, H, K, HP: tl.constexpr, KP: tl.constexpr):
    """Gate block g of a ``[4H, K]`` weight: ``W[gH:(g+1)H, :K]`` as ``[HP, KP]``."""
    j = tl.arange(0, HP)[:, None]
    k = tl.arange(0, KP)[None, :]
    return tl.load(w_ptr + (g * H + j) * K + k, mask=(j < H) & (k < K), other=0.0)


@jit
def load_gate_column(w_ptr, g, H, K, m, HP: tl.constexpr):
    """Column m of gate block g of a ``[4H, K]`` weight: ``W[gH:(g+1)H, m]`` as ``[HP]``."""
    j = tl.arange(0, HP)
    return tl.load(w_ptr + (g * H + j) * K + m, mask=j < H, other=0.0)


@jit
def load_gate_bias(b_ptr, g, H, HP: tl.constexpr):
    """Gate block g of a ``[4H]`` bias as ``[HP]``."""
    j = tl.arange(0, HP)
    return tl.load(b_ptr + g * H + j, mask=j < H, other=0.0)


@jit
def gate_products(x, w_ptr, H, K, KP: tl.constexpr, HP: tl.constexpr, PRECISION: tl.constexpr):
    """``x W_g^T`` for the four gate blocks g of a ``[4H, K]`` weight; ``x`` is ``[BLOCK, KP]``."""
    a_i = tl.dot(x, load_gate_t(w_ptr, 0, H, K, KP, HP), input_precision=PRECISION)
    a_f = tl.dot(x, load_gate_t(w_ptr, 1, H, K, KP, HP), input_precision=PRECISION)
    a_g = tl.dot(x, load_gate_t(w_ptr, 2, H, K, KP, HP), input_precision=PRECISION)
    a_o = tl.dot(x, load_gate_t(w_ptr, 3, H, K, KP, HP), input_precision=PRECISION)
    return a_i, a_f, a_g, a_o


@jit
def back_through_gates(
    d_i, d_f, d_g, d_o, w_ptr, H, K, HP: tl.constexpr, KP: tl.constexpr, PRECISION: tl.constexpr
):
    """``Σ_g da_g W_g``: the gradient w.r.t. the input of :func:`gate_products`, ``[BLOCK, KP]``."""
    dx = tl.dot(d_i, load_gate(w_ptr, 0, H, K, HP, KP), input_precision=PRECISION)
    dx += tl.dot(d_f, load_gate(w_ptr, 1, H, K, HP, KP), input_precision=PRECISION)
    dx += tl.dot(d_g, load_gate(w_ptr, 2, H, K, HP, KP), input_precision=PRECISION)
    dx += tl.dot(d_o, load_gate(w_ptr, 3, H, K, HP, KP), input_precision=PRECISION)
    return dx


@jit
def lstm_state(a_i, a_f, a_g, a_o, c):
    """The LSTM equations after the products:
    c' = σ(a_f) ⊙ c + σ(a_i) ⊙ tanh(a_g),   h' = σ(a_o) ⊙ tanh(c').   Returns (c', h')."""
    c_new = sigmoid(a_f) * c + sigmoid(a_i) * tanh(a_g)
    return c_new, sigmoid(a_o) * tanh(c_new)


@jit
def lstm_pointwise(a_i, a_f, a_g, a_o, c):
    """:func:`lstm_state` keeping what the backward pass needs: (i, f, g, o, tanh c', h')."""
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = tanh(a_g)
    o = sigmoid(a_o)
    tanh_c = tanh(f * c + i * g)
    return i, f, g, o, tanh_c, o * tanh_c


@jit
def lstm_pointwise_backward(i, f, g, o, c, tanh_c, dh_new, dc_new):
    """Back through :func:`lstm_pointwise`: the pre-activation gradients da_i, da_f, da_g, da_o
    and dc (w.r.t. the previous cell state), from dh' and dc'."""
    dc_total = dc_new + dh_new * o * (1.0 - tanh_c * tanh_c)
    da_i = dc_total * g * i * (1.0 - i)
    da_f = dc_total * c * f * (1.0 - f)
    da_g = dc_total * i * (1.0 - g * g)
    da_o = dh_new * tanh_c * o * (1.0 - o)
    return da_i, da_f, da_g, da_o, dc_total * f


@jit
def accumulate_gate_weights(
    acc_i, acc_f, acc_g, acc_o, d_i, d_f, d_g, d_o, x, PRECISION: tl.constexpr
):
    """``acc_g += da_g^T x``: a block's contribution to the gradient of a ``[4H, K]`` weight."""
    acc_i = tl.dot(tl.trans(d_i), x, acc_i, input_precision=PRECISION)
    acc_f = tl.dot(tl.trans(d_f), x, acc_f, input_precision=PRECISION)
    acc_g = tl.dot(tl.trans(d_g), x, acc_g, input_precision=PRECISION)
    acc_o = tl.dot(tl.trans(d_o), x, acc_o, input_precision=PRECISION)
    return acc_i, acc_f, acc_g, acc_o


@jit
def store_gate_tile(part_ptr, acc, g, H, K, HP: tl.constexpr, KP: tl.constexpr):
    """Store gate g's ``[HP, KP]`` gradient tile into rows gH..(g+1)H of a ``[4H, K]`` slab."""
    j = tl.arange(0, HP)[:, None]
    k = tl.arange(0, KP)[None, :]
    tl.store(part_ptr + (g * H + j) * K + k, acc, mask=(j < H) & (k < K))


@jit
def store_gate_vector(part_ptr, acc, g, H, K, m, HP: tl.constexpr):
    """Store gate g's ``[HP]`` gradient into column m of a ``[4H, K]`` slab (``K=1``: a bias)."""
    j = tl.arange(0, HP)
    tl.store(part_ptr + (g * H + j) * K + m, acc, mask=j < H)
