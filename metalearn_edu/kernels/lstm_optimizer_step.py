"""The coordinate-wise LSTM optimizer step of Andrychowicz et al. (2016) as one fused Triton kernel.

One step of :class:`~metalearn_edu.learned_optimizers.LSTMOptimizer` with two layers (eq. 1):

    x      = (log|∇|/p, sgn ∇)  or  (−1, e^p ∇)                     (App. A; ∇ itself if p=None)
    [i, f, g, o]_l = W_ih,l x_l + W_hh,l h_l + b_l                 (x_1 = x, x_2 = h'_1)
    c'_l = σ(f) ⊙ c_l + σ(i) ⊙ tanh(g),     h'_l = σ(o) ⊙ tanh(c'_l)     (l = 1, 2)
    g_t  = output_scale · (w_out · h'_2 + b_out)

for every coordinate of θ at once. The reference is the library's own
:meth:`LSTMOptimizer.step <metalearn_edu.learned_optimizers.LSTMOptimizer.step>` (tested against
``torch.nn.LSTMCell`` and finite differences), and that method itself runs the kernel when
:func:`fused_step_applies` (float32 on a GPU, not switched off), the reference otherwise.

Forward: one program per block of ``BLOCK`` coordinates. It reads the gradient entries and both
layers' ``(h, c)`` rows, keeps each 20-wide state as a ``[BLOCK, 32]`` register tile (see
:mod:`._lstm_common`), reads the shared weights (a few kB, served from cache), and writes the
update and the new state, in one pass: 648 bytes per coordinate for 20 units, against about 10
kFLOP of gate products (see :mod:`.bench_lstm_steps`).

Backward: *recompute*, not save. It reads the same inputs again, recomputes the gates in
registers and back-propagates through both layers; nothing but the inputs (which autograd holds
anyway) is kept between the passes. The weight gradients are sums over all coordinates. They are
reduced *deterministically*: a fixed grid of ``programs`` persistent programs, program k taking
blocks k, k + programs, ...; each accumulates its blocks' contributions in registers (with
``tl.dot`` over the block's rows) and writes one partial sum; the partials are then added by
``torch.sum``. No atomics, so the same inputs give bit-identical gradients on every run (the
grouping depends on ``programs`` and ``BLOCK``; change them and the last bits may change).

The kernels compute in float32; the step falls back to the reference for other dtypes and for
optimizers that are not two layers deep.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from metalearn_edu.kernels._dispatch import use_triton as _use_triton
from metalearn_edu.kernels._lstm_common import (
    accumulate_gate_weights,
    back_through_gates,
    cdiv,
    default_programs,
    gate_products,
    jit,
    load_gate_bias,
    load_gate_column,
    log_sign_derivatives,
    log_sign_features,
    lstm_pointwise,
    lstm_pointwise_backward,
    lstm_state,
    padded_width,
    row_offsets,
    store_gate_tile,
    store_gate_vector,
    tl,
)
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer, OptimizerState

FORWARD_BLOCK = 64
BACKWARD_BLOCK = 32
PRECISION = "ieee"  # tl.dot in true float32 ("tf32x3" is the faster near-float32 choice)
# The backward loop runs unpipelined. Pipelined (Triton's default), every dot operand is multi-
# buffered in shared memory: compiled for sm_90 this kernel's backward then asks for 287 kB of
# shared memory (the limit is 227 kB); unpipelined, 45 kB.
BACKWARD_STAGES = 1


# ------------------------------------------------------------------------------------------------
# The kernels
# ------------------------------------------------------------------------------------------------


@jit
def _features(grad, p, threshold, exp_p, RAW: tl.constexpr):
    """The LSTM's input features: (log|∇|/p, sgn ∇) or (−1, e^p ∇); (∇, unused) when raw."""
    if RAW:
        x0 = grad
        x1 = grad
    else:
        x0, x1 = log_sign_features(grad, p, threshold, exp_p)
    return x0, x1


@jit
def _layer1_input(x0, x1, w_ptr, g, H, IN, HP: tl.constexpr, RAW: tl.constexpr):
    """x W_ih,1[g]^T for the one (raw) or two (log/sign) input features, by broadcasting."""
    term = x0[:, None] * load_gate_column(w_ptr, g, H, IN, 0, HP)[None, :]
    if not RAW:
        term += x1[:, None] * load_gate_column(w_ptr, g, H, IN, 1, HP)[None, :]
    return term


@jit
def _layer1_gates(
    x0, x1, h1, wih_ptr, whh_ptr, b_ptr, H, IN,
    HP: tl.constexpr, RAW: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Layer 1's pre-activations [i, f, g, o] = W_ih x + W_hh h_1 + b: four ``[BLOCK, HP]``."""
    a_i, a_f, a_g, a_o = gate_products(h1, whh_ptr, H, H, HP, HP, PRECISION)
    a_i += _layer1_input(x0, x1, wih_ptr, 0, H, IN, HP, RAW) + load_gate_bias(b_ptr, 0, H, HP)
    a_f += _layer1_input(x0, x1, wih_ptr, 1, H, IN, HP, RAW) + load_gate_bias(b_ptr, 1, H, HP)
    a_g += _layer1_input(x0, x1, wih_ptr, 2, H, IN, HP, RAW) + load_gate_bias(b_ptr, 2, H, HP)
    a_o += _layer1_input(x0, x1, wih_ptr, 3, H, IN, HP, RAW) + load_gate_bias(b_ptr, 3, H, HP)
    return a_i, a_f, a_g, a_o


@jit
def _layer2_gates(
    h1_new, h2, wih_ptr, whh_ptr, b_ptr, H, HP: tl.constexpr, PRECISION: tl.constexpr
):
    """Layer 2's pre-activations [i, f, g, o] = W_ih h'_1 + W_hh h_2 + b."""
    a_i, a_f, a_g, a_o = gate_products(h1_new, wih_ptr, H, H, HP, HP, PRECISION)
    b_i, b_f, b_g, b_o = gate_products(h2, whh_ptr, H, H, HP, HP, PRECISION)
    a_i += b_i + load_gate_bias(b_ptr, 0, H, HP)[None, :]
    a_f += b_f + load_gate_bias(b_ptr, 1, H, HP)[None, :]
    a_g += b_g + load_gate_bias(b_ptr, 2, H, HP)[None, :]
    a_o += b_o + load_gate_bias(b_ptr, 3, H, HP)[None, :]
    return a_i, a_f, a_g, a_o


@jit
def _forward_kernel(
    grad_ptr, h1_ptr, c1_ptr, h2_ptr, c2_ptr,
    wih0_ptr, whh0_ptr, b0_ptr, wih1_ptr, whh1_ptr, b1_ptr, wout_ptr, bout_ptr,
    update_ptr, h1n_ptr, c1n_ptr, h2n_ptr, c2n_ptr,
    N, H, IN, p, threshold, exp_p, scale,
    RAW: tl.constexpr, HP: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """g_t and h_{t+1} for the coordinates of block ``program_id`` (Andrychowicz eq. 1)."""
    rows, offsets, mask = row_offsets(tl.program_id(0), N, H, BLOCK, HP)
    grad = tl.load(grad_ptr + rows, mask=rows < N, other=0.0)
    x0, x1 = _features(grad, p, threshold, exp_p, RAW)
    h1 = tl.load(h1_ptr + offsets, mask=mask, other=0.0)
    c1 = tl.load(c1_ptr + offsets, mask=mask, other=0.0)
    a_i, a_f, a_g, a_o = _layer1_gates(
        x0, x1, h1, wih0_ptr, whh0_ptr, b0_ptr, H, IN, HP, RAW, PRECISION
    )
    c1n, h1n = lstm_state(a_i, a_f, a_g, a_o, c1)
    tl.store(h1n_ptr + offsets, h1n, mask=mask)
    tl.store(c1n_ptr + offsets, c1n, mask=mask)

    h2 = tl.load(h2_ptr + offsets, mask=mask, other=0.0)
    c2 = tl.load(c2_ptr + offsets, mask=mask, other=0.0)
    a_i, a_f, a_g, a_o = _layer2_gates(h1n, h2, wih1_ptr, whh1_ptr, b1_ptr, H, HP, PRECISION)
    c2n, h2n = lstm_state(a_i, a_f, a_g, a_o, c2)
    tl.store(h2n_ptr + offsets, h2n, mask=mask)
    tl.store(c2n_ptr + offsets, c2n, mask=mask)

    cols = tl.arange(0, HP)
    w_out = tl.load(wout_ptr + cols, mask=cols < H, other=0.0)
    out = tl.sum(h2n * w_out[None, :], axis=1) + tl.load(bout_ptr)
    tl.store(update_ptr + rows, scale * out, mask=rows < N)


@jit
def _backward_kernel(
    grad_ptr, h1_ptr, c1_ptr, h2_ptr, c2_ptr,
    wih0_ptr, whh0_ptr, b0_ptr, wih1_ptr, whh1_ptr, b1_ptr, wout_ptr,
    d_update_ptr, d_h1n_ptr, d_c1n_ptr, d_h2n_ptr, d_c2n_ptr,
    d_grad_ptr, d_h1_ptr, d_c1_ptr, d_h2_ptr, d_c2_ptr,
    part_wih0_ptr, part_whh0_ptr, part_b0_ptr, part_wih1_ptr, part_whh1_ptr, part_b1_ptr,
    part_wout_ptr, part_bout_ptr,
    N, H, IN, p, threshold, exp_p, scale, num_blocks,
    RAW: tl.constexpr, HP: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr,
    HAS_D_UPDATE: tl.constexpr, HAS_D_H1: tl.constexpr, HAS_D_C1: tl.constexpr,
    HAS_D_H2: tl.constexpr, HAS_D_C2: tl.constexpr,
):  # fmt: skip
    """Gradients of one step: per coordinate (∇, h, c of both layers) written directly; for the
    shared weights, this program's partial sum over its blocks (see the module docstring)."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    cols = tl.arange(0, HP)
    w_out = tl.load(wout_ptr + cols, mask=cols < H, other=0.0)
    zero_tile = tl.zeros([HP, HP], dtype=tl.float32)
    zero_vec = tl.zeros([HP], dtype=tl.float32)
    # layer 1: W_ih (one column per input feature), W_hh, b
    wx0_i, wx0_f, wx0_g, wx0_o = zero_vec, zero_vec, zero_vec, zero_vec
    wx1_i, wx1_f, wx1_g, wx1_o = zero_vec, zero_vec, zero_vec, zero_vec
    uh0_i, uh0_f, uh0_g, uh0_o = zero_tile, zero_tile, zero_tile, zero_tile
    b0_i, b0_f, b0_g, b0_o = zero_vec, zero_vec, zero_vec, zero_vec
    # layer 2: W_ih, W_hh, b; the read-out
    wx1n_i, wx1n_f, wx1n_g, wx1n_o = zero_tile, zero_tile, zero_tile, zero_tile
    uh1_i, uh1_f, uh1_g, uh1_o = zero_tile, zero_tile, zero_tile, zero_tile
    b1_i, b1_f, b1_g, b1_o = zero_vec, zero_vec, zero_vec, zero_vec
    acc_wout = zero_vec
    acc_bout = tl.zeros([BLOCK], dtype=tl.float32)

    for block in range(pid, num_blocks, programs):
        rows, offsets, mask = row_offsets(block, N, H, BLOCK, HP)
        grad = tl.load(grad_ptr + rows, mask=rows < N, other=0.0)
        x0, x1 = _features(grad, p, threshold, exp_p, RAW)
        h1 = tl.load(h1_ptr + offsets, mask=mask, other=0.0)
        c1 = tl.load(c1_ptr + offsets, mask=mask, other=0.0)
        h2 = tl.load(h2_ptr + offsets, mask=mask, other=0.0)
        c2 = tl.load(c2_ptr + offsets, mask=mask, other=0.0)
        # recompute the forward pass, keeping the activations in registers
        a_i, a_f, a_g, a_o = _layer1_gates(
            x0, x1, h1, wih0_ptr, whh0_ptr, b0_ptr, H, IN, HP, RAW, PRECISION
        )
        i1, f1, g1, o1, t1, h1n = lstm_pointwise(a_i, a_f, a_g, a_o, c1)
        a_i, a_f, a_g, a_o = _layer2_gates(h1n, h2, wih1_ptr, whh1_ptr, b1_ptr, H, HP, PRECISION)
        i2, f2, g2, o2, t2, h2n = lstm_pointwise(a_i, a_f, a_g, a_o, c2)
        row_mask = rows < N
        # read-out: g_t = scale (w_out · h'_2 + b_out)
        if HAS_D_UPDATE:
            d_out = scale * tl.load(d_update_ptr + rows, mask=row_mask, other=0.0)
        else:
            d_out = tl.zeros([BLOCK], dtype=tl.float32)
        acc_wout += tl.sum(d_out[:, None] * h2n, axis=0)
        acc_bout += d_out
        d_h2n = d_out[:, None] * w_out[None, :]
        if HAS_D_H2:
            d_h2n += tl.load(d_h2n_ptr + offsets, mask=mask, other=0.0)
        if HAS_D_C2:
            d_c2n = tl.load(d_c2n_ptr + offsets, mask=mask, other=0.0)
        else:
            d_c2n = tl.zeros([BLOCK, HP], dtype=tl.float32)

        # layer 2
        d_i, d_f, d_g, d_o, d_c2 = lstm_pointwise_backward(i2, f2, g2, o2, c2, t2, d_h2n, d_c2n)
        wx1n_i, wx1n_f, wx1n_g, wx1n_o = accumulate_gate_weights(
            wx1n_i, wx1n_f, wx1n_g, wx1n_o, d_i, d_f, d_g, d_o, h1n, PRECISION
        )
        uh1_i, uh1_f, uh1_g, uh1_o = accumulate_gate_weights(
            uh1_i, uh1_f, uh1_g, uh1_o, d_i, d_f, d_g, d_o, h2, PRECISION
        )
        b1_i += tl.sum(d_i, axis=0)
        b1_f += tl.sum(d_f, axis=0)
        b1_g += tl.sum(d_g, axis=0)
        b1_o += tl.sum(d_o, axis=0)
        d_h1n = back_through_gates(d_i, d_f, d_g, d_o, wih1_ptr, H, H, HP, HP, PRECISION)
        d_h2 = back_through_gates(d_i, d_f, d_g, d_o, whh1_ptr, H, H, HP, HP, PRECISION)
        tl.store(d_h2_ptr + offsets, d_h2, mask=mask)
        tl.store(d_c2_ptr + offsets, d_c2, mask=mask)
        if HAS_D_H1:
            d_h1n += tl.load(d_h1n_ptr + offsets, mask=mask, other=0.0)
        if HAS_D_C1:
            d_c1n = tl.load(d_c1n_ptr + offsets, mask=mask, other=0.0)
        else:
            d_c1n = tl.zeros([BLOCK, HP], dtype=tl.float32)

        # layer 1
        d_i, d_f, d_g, d_o, d_c1 = lstm_pointwise_backward(i1, f1, g1, o1, c1, t1, d_h1n, d_c1n)
        uh0_i, uh0_f, uh0_g, uh0_o = accumulate_gate_weights(
            uh0_i, uh0_f, uh0_g, uh0_o, d_i, d_f, d_g, d_o, h1, PRECISION
        )
        b0_i += tl.sum(d_i, axis=0)
        b0_f += tl.sum(d_f, axis=0)
        b0_g += tl.sum(d_g, axis=0)
        b0_o += tl.sum(d_o, axis=0)
        wx0_i += tl.sum(d_i * x0[:, None], axis=0)
        wx0_f += tl.sum(d_f * x0[:, None], axis=0)
        wx0_g += tl.sum(d_g * x0[:, None], axis=0)
        wx0_o += tl.sum(d_o * x0[:, None], axis=0)
        d_x0 = tl.sum(d_i * load_gate_column(wih0_ptr, 0, H, IN, 0, HP)[None, :], axis=1)
        d_x0 += tl.sum(d_f * load_gate_column(wih0_ptr, 1, H, IN, 0, HP)[None, :], axis=1)
        d_x0 += tl.sum(d_g * load_gate_column(wih0_ptr, 2, H, IN, 0, HP)[None, :], axis=1)
        d_x0 += tl.sum(d_o * load_gate_column(wih0_ptr, 3, H, IN, 0, HP)[None, :], axis=1)
        if RAW:
            d_grad = d_x0
        else:
            wx1_i += tl.sum(d_i * x1[:, None], axis=0)
            wx1_f += tl.sum(d_f * x1[:, None], axis=0)
            wx1_g += tl.sum(d_g * x1[:, None], axis=0)
            wx1_o += tl.sum(d_o * x1[:, None], axis=0)
            d_x1 = tl.sum(d_i * load_gate_column(wih0_ptr, 0, H, IN, 1, HP)[None, :], axis=1)
            d_x1 += tl.sum(d_f * load_gate_column(wih0_ptr, 1, H, IN, 1, HP)[None, :], axis=1)
            d_x1 += tl.sum(d_g * load_gate_column(wih0_ptr, 2, H, IN, 1, HP)[None, :], axis=1)
            d_x1 += tl.sum(d_o * load_gate_column(wih0_ptr, 3, H, IN, 1, HP)[None, :], axis=1)
            d_magnitude, d_sign = log_sign_derivatives(grad, p, threshold, exp_p)
            d_grad = d_x0 * d_magnitude + d_x1 * d_sign
        tl.store(d_grad_ptr + rows, d_grad, mask=row_mask)
        d_h1 = back_through_gates(d_i, d_f, d_g, d_o, whh0_ptr, H, H, HP, HP, PRECISION)
        tl.store(d_h1_ptr + offsets, d_h1, mask=mask)
        tl.store(d_c1_ptr + offsets, d_c1, mask=mask)

    # this program's partial sums: slab pid of each [programs, *weight.shape] buffer
    slab_ih0 = part_wih0_ptr + pid * 4 * H * IN
    store_gate_vector(slab_ih0, wx0_i, 0, H, IN, 0, HP)
    store_gate_vector(slab_ih0, wx0_f, 1, H, IN, 0, HP)
    store_gate_vector(slab_ih0, wx0_g, 2, H, IN, 0, HP)
    store_gate_vector(slab_ih0, wx0_o, 3, H, IN, 0, HP)
    if not RAW:
        store_gate_vector(slab_ih0, wx1_i, 0, H, IN, 1, HP)
        store_gate_vector(slab_ih0, wx1_f, 1, H, IN, 1, HP)
        store_gate_vector(slab_ih0, wx1_g, 2, H, IN, 1, HP)
        store_gate_vector(slab_ih0, wx1_o, 3, H, IN, 1, HP)
    slab = part_whh0_ptr + pid * 4 * H * H
    store_gate_tile(slab, uh0_i, 0, H, H, HP, HP)
    store_gate_tile(slab, uh0_f, 1, H, H, HP, HP)
    store_gate_tile(slab, uh0_g, 2, H, H, HP, HP)
    store_gate_tile(slab, uh0_o, 3, H, H, HP, HP)
    slab = part_wih1_ptr + pid * 4 * H * H
    store_gate_tile(slab, wx1n_i, 0, H, H, HP, HP)
    store_gate_tile(slab, wx1n_f, 1, H, H, HP, HP)
    store_gate_tile(slab, wx1n_g, 2, H, H, HP, HP)
    store_gate_tile(slab, wx1n_o, 3, H, H, HP, HP)
    slab = part_whh1_ptr + pid * 4 * H * H
    store_gate_tile(slab, uh1_i, 0, H, H, HP, HP)
    store_gate_tile(slab, uh1_f, 1, H, H, HP, HP)
    store_gate_tile(slab, uh1_g, 2, H, H, HP, HP)
    store_gate_tile(slab, uh1_o, 3, H, H, HP, HP)
    slab = part_b0_ptr + pid * 4 * H
    store_gate_vector(slab, b0_i, 0, H, 1, 0, HP)
    store_gate_vector(slab, b0_f, 1, H, 1, 0, HP)
    store_gate_vector(slab, b0_g, 2, H, 1, 0, HP)
    store_gate_vector(slab, b0_o, 3, H, 1, 0, HP)
    slab = part_b1_ptr + pid * 4 * H
    store_gate_vector(slab, b1_i, 0, H, 1, 0, HP)
    store_gate_vector(slab, b1_f, 1, H, 1, 0, HP)
    store_gate_vector(slab, b1_g, 2, H, 1, 0, HP)
    store_gate_vector(slab, b1_o, 3, H, 1, 0, HP)
    tl.store(part_wout_ptr + pid * H + cols, acc_wout, mask=cols < H)
    tl.store(part_bout_ptr + pid, tl.sum(acc_bout, axis=0))


# ------------------------------------------------------------------------------------------------
# The autograd function
# ------------------------------------------------------------------------------------------------

WEIGHT_NAMES = (
    "lstm0.weight_ih", "lstm0.weight_hh", "lstm0.bias",
    "lstm1.weight_ih", "lstm1.weight_hh", "lstm1.bias",
    "output.weight", "output.bias",
)  # fmt: skip


def _preprocessing_constants(p: float | None) -> tuple[float, float, float]:
    """(p, e^{−p}, e^p) for the kernels; placeholders when the gradient is fed raw."""
    if p is None:
        return 1.0, 0.0, 1.0
    return float(p), math.exp(-p), math.exp(p)


class LSTMOptimizerStep(torch.autograd.Function):
    """The fused two-layer step as an autograd function (float32, contiguous tensors).

    Inputs: the flat gradient ``[N]``, the state ``h_1, c_1, h_2, c_2 [N, H]``, the eight weight
    tensors in :data:`WEIGHT_NAMES` order, then the constants ``p`` (``None``: raw input),
    ``output_scale``, the forward and backward block sizes, the backward grid (``None``: see
    :func:`default_programs`) and the ``tl.dot`` precision. Outputs: the update ``[N]`` and the
    new ``h_1, c_1, h_2, c_2``. Differentiable once, w.r.t. every tensor input.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        grad: Tensor, h1: Tensor, c1: Tensor, h2: Tensor, c2: Tensor,
        wih0: Tensor, whh0: Tensor, b0: Tensor, wih1: Tensor, whh1: Tensor, b1: Tensor,
        wout: Tensor, bout: Tensor,
        p: float | None, scale: float, block: int, backward_block: int,
        programs: int | None, precision: str,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        n, hidden = h1.shape
        inputs = [t.contiguous() for t in (grad, h1, c1, h2, c2)]
        weights = [t.contiguous() for t in (wih0, whh0, b0, wih1, whh1, b1, wout, bout)]
        update = torch.empty_like(inputs[0])
        new_state = [torch.empty_like(inputs[1]) for _ in range(4)]
        p_value, threshold, exp_p = _preprocessing_constants(p)
        if n > 0:
            _forward_kernel[(cdiv(n, block),)](
                *inputs, *weights, update, *new_state,
                n, hidden, wih0.shape[1], p_value, threshold, exp_p, float(scale),
                RAW=p is None, HP=padded_width(hidden), BLOCK=block, PRECISION=precision,
            )  # fmt: skip
        ctx.save_for_backward(*inputs, *weights)
        ctx.constants = (p, float(scale), backward_block, programs, precision)
        ctx.set_materialize_grads(False)
        return update, *new_state

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx,
        d_update: Tensor | None, d_h1n: Tensor | None, d_c1n: Tensor | None,
        d_h2n: Tensor | None, d_c2n: Tensor | None,
    ) -> tuple[Tensor | None, ...]:  # fmt: skip
        grad, h1, c1, h2, c2, wih0, whh0, b0, wih1, whh1, b1, wout, bout = ctx.saved_tensors
        p, scale, block, programs, precision = ctx.constants
        outputs = (d_update, d_h1n, d_c1n, d_h2n, d_c2n)
        if all(d is None for d in outputs):
            return (None,) * 19
        n, hidden = h1.shape
        num_blocks = cdiv(n, block)
        grid = programs or default_programs(grad.device, num_blocks)
        d_inputs = [torch.empty_like(t) for t in (grad, h1, c1, h2, c2)]
        weights = (wih0, whh0, b0, wih1, whh1, b1, wout, bout)
        partials = [grad.new_zeros((grid, *w.shape)) for w in weights]
        present = [d.contiguous() if d is not None else grad for d in outputs]  # grad: unread
        p_value, threshold, exp_p = _preprocessing_constants(p)
        if n > 0:
            _backward_kernel[(grid,)](
                grad, h1, c1, h2, c2, wih0, whh0, b0, wih1, whh1, b1, wout,
                *present, *d_inputs, *partials,
                n, hidden, wih0.shape[1], p_value, threshold, exp_p, scale, num_blocks,
                RAW=p is None, HP=padded_width(hidden), BLOCK=block, PRECISION=precision,
                HAS_D_UPDATE=d_update is not None, HAS_D_H1=d_h1n is not None,
                HAS_D_C1=d_c1n is not None, HAS_D_H2=d_h2n is not None,
                HAS_D_C2=d_c2n is not None,
                num_stages=BACKWARD_STAGES,
            )  # fmt: skip
        d_weights = [part.sum(0) for part in partials]
        return (*d_inputs, *d_weights, None, None, None, None, None, None)


# ------------------------------------------------------------------------------------------------
# Reference, kernel, dispatch
# ------------------------------------------------------------------------------------------------


def lstm_optimizer_step_reference(
    optimizer: LSTMOptimizer, params: Params, grad: Tensor, state: OptimizerState
) -> tuple[Tensor, OptimizerState]:
    """The definition: the library's :meth:`LSTMOptimizer.step` in plain PyTorch."""
    return optimizer.step(params, grad, state, use_triton=False)


def lstm_optimizer_step_triton(
    optimizer: LSTMOptimizer,
    params: Params,
    grad: Tensor,
    state: OptimizerState,
    *,
    block: int = FORWARD_BLOCK,
    backward_block: int = BACKWARD_BLOCK,
    programs: int | None = None,
    precision: str = PRECISION,
) -> tuple[Tensor, OptimizerState]:
    """The same step as :func:`lstm_optimizer_step_reference`, by the fused kernels (two layers,
    float32). ``block`` and ``backward_block`` are the coordinates per program (powers of two,
    at least 16), ``programs`` the backward grid, ``precision`` that of ``tl.dot``."""
    if optimizer.layers != 2:
        raise ValueError(f"the fused step has two layers, the optimizer {optimizer.layers}.")
    for size in (block, backward_block):
        if size < 16 or size & (size - 1):
            raise ValueError(f"block sizes must be powers of two >= 16, got {size}.")
    (h1, c1), (h2, c2) = state
    outputs = LSTMOptimizerStep.apply(
        grad.reshape(-1), h1, c1, h2, c2, *(params[name] for name in WEIGHT_NAMES),
        optimizer.p, optimizer.output_scale, block, backward_block, programs, precision,
    )  # fmt: skip
    update, h1n, c1n, h2n, c2n = outputs
    return update.reshape(grad.shape), [(h1n, c1n), (h2n, c2n)]


def fused_step_applies(
    optimizer: LSTMOptimizer,
    params: Params,
    grad: Tensor,
    state: OptimizerState,
    *,
    use_triton: bool | None = None,
) -> bool:
    """Whether :meth:`LSTMOptimizer.step` runs the fused kernel: two layers, float32 tensors, and
    :func:`~metalearn_edu.kernels.use_triton`'s conditions (not switched off; a CUDA device).

    Automatically (``use_triton=None``) only on a GPU: on the CPU the reference runs even under
    ``TRITON_INTERPRET=1``, because the interpreter, a checking tool, is hundreds of times slower
    than PyTorch; ``use_triton=True`` runs it there (and raises where it cannot run at all);
    ``use_triton=False`` never runs it."""
    if use_triton is False or (use_triton is None and grad.device.type != "cuda"):
        return False
    tensors = [grad, *(t for pair in state for t in pair), *params.values()]
    reason = None
    if optimizer.layers != 2:
        reason = f"the fused step has two layers, the optimizer {optimizer.layers}"
    elif any(t.dtype != torch.float32 for t in tensors):
        reason = "the fused step computes in float32; the tensors are not all float32"
    if reason is not None:
        if use_triton:
            raise RuntimeError(f"the Triton kernel cannot run here: {reason}.")
        return False
    return _use_triton(*tensors, use_triton=use_triton)
