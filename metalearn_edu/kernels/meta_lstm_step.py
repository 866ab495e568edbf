"""The Meta-LSTM meta-learner step of Ravi & Larochelle (2017) as one fused Triton kernel.

One call of :func:`~metalearn_edu.meta_lstm.meta_learner_step`, for every learner coordinate:

    x = (log_sign(L_t), log_sign(∇_t))                            (4 features; App. A of
                                                                   Andrychowicz et al.)
    [i, f, g, o] = W_ih x + W_hh h + b,   c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')
    f_t = σ(W_F · [h', θ_{t−1}, f_{t−1}] + b_F),    i_t = σ(W_I · [h', θ_{t−1}, i_{t−1}] + b_I)
    θ_t = c_t = f_t ⊙ θ_{t−1} − i_t ⊙ ∇_t                         (Ravi & Larochelle eq. 2)

The reference is the library's :func:`~metalearn_edu.meta_lstm.meta_learner_step` (tested
against ``torch.nn.LSTMCell`` and finite differences), and that function itself runs the kernel
when :func:`fused_step_applies` (float32 on a GPU, not switched off), the reference otherwise.

Forward: one program per block of ``BLOCK`` coordinates; the layer-1 state is a ``[BLOCK, 32]``
register tile for 20 units (:mod:`._lstm_common`); the loss's two features are computed once per
program from the scalar; the shared weights are read from cache. Per coordinate it reads ∇, θ,
f, i and the ``(h, c)`` rows and writes the five new values: one pass over the state.

Backward: *recompute*, not save: it reads the same inputs again and rebuilds the gates in
registers. The weight gradients (and the loss's, the same input for every coordinate) are sums
over coordinates, reduced *deterministically*: a fixed grid of ``programs`` persistent programs
(program k takes blocks k, k + programs, ...) accumulates in registers and writes one partial sum
each, which ``torch.sum`` adds. No atomics: the same inputs give bit-identical results on every
run. Two reductions cost nothing per coordinate: the loss's features are the same on every row,
so ``∂W_ih[:, 0:2] = Σ_rows ∂a · (log_sign L)`` is the bias gradient times the features, and the
loss's gradient is the bias gradient through ``W_ih[:, 0:2]``.

Float32 only: the step falls back to the reference for other dtypes.
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
    sigmoid,
    store_gate_tile,
    store_gate_vector,
    tl,
)
from metalearn_edu.learned_optimizers.lstm_cell import Params
from metalearn_edu.learned_optimizers.preprocessing import P_PAPER
from metalearn_edu.meta_lstm.cell import MetaLearnerState, meta_learner_step

FORWARD_BLOCK = 64
BACKWARD_BLOCK = 32
PRECISION = "ieee"  # tl.dot in true float32 ("tf32x3" is the faster near-float32 choice)
# The backward loop runs unpipelined. Pipelined (Triton's default), every dot operand is multi-
# buffered in shared memory: compiled for sm_90 this kernel's backward then asks for 121 kB of
# shared memory (one program per SM); unpipelined, 20 kB.
BACKWARD_STAGES = 1

# ------------------------------------------------------------------------------------------------
# The kernels
# ------------------------------------------------------------------------------------------------


@jit
def _input_term(lf0, lf1, gx0, gx1, w_ptr, g, H, HP: tl.constexpr):
    """x W_ih[g]^T for x = (loss features, gradient features), by broadcasting."""
    loss_term = lf0 * load_gate_column(w_ptr, g, H, 4, 0, HP)
    loss_term += lf1 * load_gate_column(w_ptr, g, H, 4, 1, HP)
    grad_term = gx0[:, None] * load_gate_column(w_ptr, g, H, 4, 2, HP)[None, :]
    grad_term += gx1[:, None] * load_gate_column(w_ptr, g, H, 4, 3, HP)[None, :]
    return grad_term + loss_term[None, :]


@jit
def _cell_gate(h_new, theta, previous, w_ptr, b_ptr, H, HP: tl.constexpr):
    """σ(W · [h', θ_{t−1}, previous gate] + b) for one of the meta-learner cell's two gates."""
    cols = tl.arange(0, HP)
    w_h = tl.load(w_ptr + cols, mask=cols < H, other=0.0)
    z = tl.sum(h_new * w_h[None, :], axis=1)
    z += tl.load(w_ptr + H) * theta + tl.load(w_ptr + H + 1) * previous + tl.load(b_ptr)
    return sigmoid(z)


@jit
def _layer_gates(
    lf0, lf1, gx0, gx1, h, wih_ptr, whh_ptr, b_ptr, H, HP: tl.constexpr, PRECISION: tl.constexpr
):
    """Layer 1's pre-activations [i, f, g, o] = W_ih x + W_hh h + b: four ``[BLOCK, HP]``."""
    a_i, a_f, a_g, a_o = gate_products(h, whh_ptr, H, H, HP, HP, PRECISION)
    a_i += _input_term(lf0, lf1, gx0, gx1, wih_ptr, 0, H, HP) + load_gate_bias(b_ptr, 0, H, HP)
    a_f += _input_term(lf0, lf1, gx0, gx1, wih_ptr, 1, H, HP) + load_gate_bias(b_ptr, 1, H, HP)
    a_g += _input_term(lf0, lf1, gx0, gx1, wih_ptr, 2, H, HP) + load_gate_bias(b_ptr, 2, H, HP)
    a_o += _input_term(lf0, lf1, gx0, gx1, wih_ptr, 3, H, HP) + load_gate_bias(b_ptr, 3, H, HP)
    return a_i, a_f, a_g, a_o


@jit
def _forward_kernel(
    loss_ptr, grad_ptr, h_ptr, c_ptr, f_ptr, i_ptr, theta_ptr,
    wih_ptr, whh_ptr, b_ptr, wf_ptr, wi_ptr, bf_ptr, bi_ptr,
    h_new_ptr, c_new_ptr, f_new_ptr, i_new_ptr, theta_new_ptr,
    N, H, p, threshold, exp_p,
    HP: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """The next meta-learner state for the coordinates of block ``program_id`` (eq. 2)."""
    rows, offsets, mask = row_offsets(tl.program_id(0), N, H, BLOCK, HP)
    row_mask = rows < N
    lf0, lf1 = log_sign_features(tl.load(loss_ptr), p, threshold, exp_p)
    grad = tl.load(grad_ptr + rows, mask=row_mask, other=0.0)
    gx0, gx1 = log_sign_features(grad, p, threshold, exp_p)
    h = tl.load(h_ptr + offsets, mask=mask, other=0.0)
    c = tl.load(c_ptr + offsets, mask=mask, other=0.0)
    a_i, a_f, a_g, a_o = _layer_gates(
        lf0, lf1, gx0, gx1, h, wih_ptr, whh_ptr, b_ptr, H, HP, PRECISION
    )
    c_new, h_new = lstm_state(a_i, a_f, a_g, a_o, c)
    tl.store(h_new_ptr + offsets, h_new, mask=mask)
    tl.store(c_new_ptr + offsets, c_new, mask=mask)

    theta = tl.load(theta_ptr + rows, mask=row_mask, other=0.0)
    f_old = tl.load(f_ptr + rows, mask=row_mask, other=0.0)
    i_old = tl.load(i_ptr + rows, mask=row_mask, other=0.0)
    f_new = _cell_gate(h_new, theta, f_old, wf_ptr, bf_ptr, H, HP)
    i_new = _cell_gate(h_new, theta, i_old, wi_ptr, bi_ptr, H, HP)
    tl.store(f_new_ptr + rows, f_new, mask=row_mask)
    tl.store(i_new_ptr + rows, i_new, mask=row_mask)
    tl.store(theta_new_ptr + rows, f_new * theta - i_new * grad, mask=row_mask)


@jit
def _backward_kernel(
    loss_ptr, grad_ptr, h_ptr, c_ptr, f_ptr, i_ptr, theta_ptr,
    wih_ptr, whh_ptr, b_ptr, wf_ptr, wi_ptr, bf_ptr, bi_ptr,
    d_h_new_ptr, d_c_new_ptr, d_f_new_ptr, d_i_new_ptr, d_theta_new_ptr,
    d_grad_ptr, d_h_ptr, d_c_ptr, d_f_ptr, d_i_ptr, d_theta_ptr,
    part_loss_ptr, part_wih_ptr, part_whh_ptr, part_b_ptr,
    part_wf_ptr, part_wi_ptr, part_bf_ptr, part_bi_ptr,
    N, H, p, threshold, exp_p, num_blocks,
    HP: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr,
    HAS_D_H: tl.constexpr, HAS_D_C: tl.constexpr, HAS_D_F: tl.constexpr,
    HAS_D_I: tl.constexpr, HAS_D_THETA: tl.constexpr,
):  # fmt: skip
    """Gradients of one step: per coordinate (∇, h, c, f, i, θ) written directly; for the shared
    weights and the loss, this program's partial sum over its blocks (module docstring)."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    cols = tl.arange(0, HP)
    wf_h = tl.load(wf_ptr + cols, mask=cols < H, other=0.0)
    wi_h = tl.load(wi_ptr + cols, mask=cols < H, other=0.0)
    wf_theta = tl.load(wf_ptr + H)
    wf_prev = tl.load(wf_ptr + H + 1)
    wi_theta = tl.load(wi_ptr + H)
    wi_prev = tl.load(wi_ptr + H + 1)
    zero_tile = tl.zeros([HP, HP], dtype=tl.float32)
    zero_vec = tl.zeros([HP], dtype=tl.float32)
    zero_rows = tl.zeros([BLOCK], dtype=tl.float32)
    wx2_i, wx2_f, wx2_g, wx2_o = zero_vec, zero_vec, zero_vec, zero_vec  # W_ih[:, 2]
    wx3_i, wx3_f, wx3_g, wx3_o = zero_vec, zero_vec, zero_vec, zero_vec  # W_ih[:, 3]
    uh_i, uh_f, uh_g, uh_o = zero_tile, zero_tile, zero_tile, zero_tile  # W_hh
    b_i, b_f, b_g, b_o = zero_vec, zero_vec, zero_vec, zero_vec
    acc_wf_h, acc_wi_h = zero_vec, zero_vec
    acc_wf_theta, acc_wf_prev, acc_bf = zero_rows, zero_rows, zero_rows
    acc_wi_theta, acc_wi_prev, acc_bi = zero_rows, zero_rows, zero_rows

    for block in range(pid, num_blocks, programs):
        rows, offsets, mask = row_offsets(block, N, H, BLOCK, HP)
        row_mask = rows < N
        lf0, lf1 = log_sign_features(tl.load(loss_ptr), p, threshold, exp_p)
        grad = tl.load(grad_ptr + rows, mask=row_mask, other=0.0)
        gx0, gx1 = log_sign_features(grad, p, threshold, exp_p)
        h = tl.load(h_ptr + offsets, mask=mask, other=0.0)
        c = tl.load(c_ptr + offsets, mask=mask, other=0.0)
        theta = tl.load(theta_ptr + rows, mask=row_mask, other=0.0)
        f_old = tl.load(f_ptr + rows, mask=row_mask, other=0.0)
        i_old = tl.load(i_ptr + rows, mask=row_mask, other=0.0)
        # recompute the forward pass, keeping the activations in registers
        a_i, a_f, a_g, a_o = _layer_gates(
            lf0, lf1, gx0, gx1, h, wih_ptr, whh_ptr, b_ptr, H, HP, PRECISION
        )
        i1, f1, g1, o1, tanh_c, h_new = lstm_pointwise(a_i, a_f, a_g, a_o, c)
        f_new = _cell_gate(h_new, theta, f_old, wf_ptr, bf_ptr, H, HP)
        i_new = _cell_gate(h_new, theta, i_old, wi_ptr, bi_ptr, H, HP)
        # θ_t = f_t θ_{t−1} − i_t ∇_t
        d_f_new = tl.zeros([BLOCK], dtype=tl.float32)
        d_i_new = tl.zeros([BLOCK], dtype=tl.float32)
        d_theta = tl.zeros([BLOCK], dtype=tl.float32)
        d_grad = tl.zeros([BLOCK], dtype=tl.float32)
        if HAS_D_THETA:
            d_theta_new = tl.load(d_theta_new_ptr + rows, mask=row_mask, other=0.0)
            d_f_new += d_theta_new * theta
            d_i_new -= d_theta_new * grad
            d_theta += d_theta_new * f_new
            d_grad -= d_theta_new * i_new
        if HAS_D_F:
            d_f_new += tl.load(d_f_new_ptr + rows, mask=row_mask, other=0.0)
        if HAS_D_I:
            d_i_new += tl.load(d_i_new_ptr + rows, mask=row_mask, other=0.0)
        # the cell's gates f_t = σ(z_F), i_t = σ(z_I)
        d_zf = d_f_new * f_new * (1.0 - f_new)
        d_zi = d_i_new * i_new * (1.0 - i_new)
        d_theta += d_zf * wf_theta + d_zi * wi_theta
        tl.store(d_theta_ptr + rows, d_theta, mask=row_mask)
        tl.store(d_f_ptr + rows, d_zf * wf_prev, mask=row_mask)
        tl.store(d_i_ptr + rows, d_zi * wi_prev, mask=row_mask)
        acc_wf_h += tl.sum(d_zf[:, None] * h_new, axis=0)
        acc_wi_h += tl.sum(d_zi[:, None] * h_new, axis=0)
        acc_wf_theta += d_zf * theta
        acc_wi_theta += d_zi * theta
        acc_wf_prev += d_zf * f_old
        acc_wi_prev += d_zi * i_old
        acc_bf += d_zf
        acc_bi += d_zi
        d_h_new = d_zf[:, None] * wf_h[None, :] + d_zi[:, None] * wi_h[None, :]
        if HAS_D_H:
            d_h_new += tl.load(d_h_new_ptr + offsets, mask=mask, other=0.0)
        if HAS_D_C:
            d_c_new = tl.load(d_c_new_ptr + offsets, mask=mask, other=0.0)
        else:
            d_c_new = tl.zeros([BLOCK, HP], dtype=tl.float32)

        # layer 1
        d_i, d_f, d_g, d_o, d_c = lstm_pointwise_backward(
            i1, f1, g1, o1, c, tanh_c, d_h_new, d_c_new
        )
        uh_i, uh_f, uh_g, uh_o = accumulate_gate_weights(
            uh_i, uh_f, uh_g, uh_o, d_i, d_f, d_g, d_o, h, PRECISION
        )
        b_i += tl.sum(d_i, axis=0)
        b_f += tl.sum(d_f, axis=0)
        b_g += tl.sum(d_g, axis=0)
        b_o += tl.sum(d_o, axis=0)
        wx2_i += tl.sum(d_i * gx0[:, None], axis=0)
        wx2_f += tl.sum(d_f * gx0[:, None], axis=0)
        wx2_g += tl.sum(d_g * gx0[:, None], axis=0)
        wx2_o += tl.sum(d_o * gx0[:, None], axis=0)
        wx3_i += tl.sum(d_i * gx1[:, None], axis=0)
        wx3_f += tl.sum(d_f * gx1[:, None], axis=0)
        wx3_g += tl.sum(d_g * gx1[:, None], axis=0)
        wx3_o += tl.sum(d_o * gx1[:, None], axis=0)
        d_x2 = tl.sum(d_i * load_gate_column(wih_ptr, 0, H, 4, 2, HP)[None, :], axis=1)
        d_x2 += tl.sum(d_f * load_gate_column(wih_ptr, 1, H, 4, 2, HP)[None, :], axis=1)
        d_x2 += tl.sum(d_g * load_gate_column(wih_ptr, 2, H, 4, 2, HP)[None, :], axis=1)
        d_x2 += tl.sum(d_o * load_gate_column(wih_ptr, 3, H, 4, 2, HP)[None, :], axis=1)
        d_x3 = tl.sum(d_i * load_gate_column(wih_ptr, 0, H, 4, 3, HP)[None, :], axis=1)
        d_x3 += tl.sum(d_f * load_gate_column(wih_ptr, 1, H, 4, 3, HP)[None, :], axis=1)
        d_x3 += tl.sum(d_g * load_gate_column(wih_ptr, 2, H, 4, 3, HP)[None, :], axis=1)
        d_x3 += tl.sum(d_o * load_gate_column(wih_ptr, 3, H, 4, 3, HP)[None, :], axis=1)
        d_magnitude, d_sign = log_sign_derivatives(grad, p, threshold, exp_p)
        d_grad += d_x2 * d_magnitude + d_x3 * d_sign
        tl.store(d_grad_ptr + rows, d_grad, mask=row_mask)
        d_h = back_through_gates(d_i, d_f, d_g, d_o, whh_ptr, H, H, HP, HP, PRECISION)
        tl.store(d_h_ptr + offsets, d_h, mask=mask)
        tl.store(d_c_ptr + offsets, d_c, mask=mask)

    # the loss's features are the same on every row: their sums follow from the bias gradient
    loss = tl.load(loss_ptr)
    lf0, lf1 = log_sign_features(loss, p, threshold, exp_p)
    d_lf0 = tl.sum(b_i * load_gate_column(wih_ptr, 0, H, 4, 0, HP), axis=0)
    d_lf0 += tl.sum(b_f * load_gate_column(wih_ptr, 1, H, 4, 0, HP), axis=0)
    d_lf0 += tl.sum(b_g * load_gate_column(wih_ptr, 2, H, 4, 0, HP), axis=0)
    d_lf0 += tl.sum(b_o * load_gate_column(wih_ptr, 3, H, 4, 0, HP), axis=0)
    d_lf1 = tl.sum(b_i * load_gate_column(wih_ptr, 0, H, 4, 1, HP), axis=0)
    d_lf1 += tl.sum(b_f * load_gate_column(wih_ptr, 1, H, 4, 1, HP), axis=0)
    d_lf1 += tl.sum(b_g * load_gate_column(wih_ptr, 2, H, 4, 1, HP), axis=0)
    d_lf1 += tl.sum(b_o * load_gate_column(wih_ptr, 3, H, 4, 1, HP), axis=0)
    d_loss_magnitude, d_loss_sign = log_sign_derivatives(loss, p, threshold, exp_p)
    tl.store(part_loss_ptr + pid, d_lf0 * d_loss_magnitude + d_lf1 * d_loss_sign)

    slab = part_wih_ptr + pid * 4 * H * 4
    store_gate_vector(slab, lf0 * b_i, 0, H, 4, 0, HP)
    store_gate_vector(slab, lf0 * b_f, 1, H, 4, 0, HP)
    store_gate_vector(slab, lf0 * b_g, 2, H, 4, 0, HP)
    store_gate_vector(slab, lf0 * b_o, 3, H, 4, 0, HP)
    store_gate_vector(slab, lf1 * b_i, 0, H, 4, 1, HP)
    store_gate_vector(slab, lf1 * b_f, 1, H, 4, 1, HP)
    store_gate_vector(slab, lf1 * b_g, 2, H, 4, 1, HP)
    store_gate_vector(slab, lf1 * b_o, 3, H, 4, 1, HP)
    store_gate_vector(slab, wx2_i, 0, H, 4, 2, HP)
    store_gate_vector(slab, wx2_f, 1, H, 4, 2, HP)
    store_gate_vector(slab, wx2_g, 2, H, 4, 2, HP)
    store_gate_vector(slab, wx2_o, 3, H, 4, 2, HP)
    store_gate_vector(slab, wx3_i, 0, H, 4, 3, HP)
    store_gate_vector(slab, wx3_f, 1, H, 4, 3, HP)
    store_gate_vector(slab, wx3_g, 2, H, 4, 3, HP)
    store_gate_vector(slab, wx3_o, 3, H, 4, 3, HP)
    slab = part_whh_ptr + pid * 4 * H * H
    store_gate_tile(slab, uh_i, 0, H, H, HP, HP)
    store_gate_tile(slab, uh_f, 1, H, H, HP, HP)
    store_gate_tile(slab, uh_g, 2, H, H, HP, HP)
    store_gate_tile(slab, uh_o, 3, H, H, HP, HP)
    slab = part_b_ptr + pid * 4 * H
    store_gate_vector(slab, b_i, 0, H, 1, 0, HP)
    store_gate_vector(slab, b_f, 1, H, 1, 0, HP)
    store_gate_vector(slab, b_g, 2, H, 1, 0, HP)
    store_gate_vector(slab, b_o, 3, H, 1, 0, HP)
    slab = part_wf_ptr + pid * (H + 2)
    tl.store(slab + cols, acc_wf_h, mask=cols < H)
    tl.store(slab + H, tl.sum(acc_wf_theta, axis=0))
    tl.store(slab + H + 1, tl.sum(acc_wf_prev, axis=0))
    slab = part_wi_ptr + pid * (H + 2)
    tl.store(slab + cols, acc_wi_h, mask=cols < H)
    tl.store(slab + H, tl.sum(acc_wi_theta, axis=0))
    tl.store(slab + H + 1, tl.sum(acc_wi_prev, axis=0))
    tl.store(part_bf_ptr + pid, tl.sum(acc_bf, axis=0))
    tl.store(part_bi_ptr + pid, tl.sum(acc_bi, axis=0))


# ------------------------------------------------------------------------------------------------
# The autograd function
# ------------------------------------------------------------------------------------------------

WEIGHT_NAMES = (
    "lstm.weight_ih", "lstm.weight_hh", "lstm.bias", "cell.W_F", "cell.W_I", "cell.b_F", "cell.b_I"
)  # fmt: skip


class MetaLSTMStep(torch.autograd.Function):
    """The fused meta-learner step as an autograd function (float32, contiguous tensors).

    Inputs: the loss (one element), ∇ ``[n]``, the state ``h, c [n, H]``, ``f, i, θ [n]``, the
    seven weight tensors in :data:`WEIGHT_NAMES` order, then the constants ``p``, the forward and
    backward block sizes, the backward grid (``None``: :func:`default_programs`) and the
    ``tl.dot`` precision. Outputs: the new ``h, c, f, i, θ``. Differentiable once, w.r.t. every
    tensor input (the loss and ∇ included, although the Meta-LSTM treats them as constants).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        loss: Tensor, grad: Tensor, h: Tensor, c: Tensor, f: Tensor, i: Tensor, theta: Tensor,
        wih: Tensor, whh: Tensor, b: Tensor, wf: Tensor, wi: Tensor, bf: Tensor, bi: Tensor,
        p: float, block: int, backward_block: int, programs: int | None, precision: str,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        n, hidden = h.shape
        inputs = [t.contiguous() for t in (loss.reshape(1), grad, h, c, f, i, theta)]
        weights = [t.contiguous() for t in (wih, whh, b, wf, wi, bf, bi)]
        new_state = [torch.empty_like(t) for t in inputs[2:]]
        if n > 0:
            _forward_kernel[(cdiv(n, block),)](
                *inputs, *weights, *new_state, n, hidden, float(p), math.exp(-p), math.exp(p),
                HP=padded_width(hidden), BLOCK=block, PRECISION=precision,
            )  # fmt: skip
        ctx.save_for_backward(*inputs, *weights)
        ctx.constants = (float(p), backward_block, programs, precision)
        ctx.loss_shape = loss.shape
        ctx.set_materialize_grads(False)
        return tuple(new_state)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx,
        d_h_new: Tensor | None, d_c_new: Tensor | None, d_f_new: Tensor | None,
        d_i_new: Tensor | None, d_theta_new: Tensor | None,
    ) -> tuple[Tensor | None, ...]:  # fmt: skip
        loss, grad, h, c, f, i, theta, wih, whh, b, wf, wi, bf, bi = ctx.saved_tensors
        p, block, programs, precision = ctx.constants
        outputs = (d_h_new, d_c_new, d_f_new, d_i_new, d_theta_new)
        if all(d is None for d in outputs):
            return (None,) * 19
        n, hidden = h.shape
        num_blocks = cdiv(n, block)
        grid = programs or default_programs(grad.device, max(num_blocks, 1))
        d_inputs = [torch.empty_like(t) for t in (grad, h, c, f, i, theta)]
        weights = (wih, whh, b, wf, wi, bf, bi)
        partials = [grad.new_zeros((grid, 1)), *(grad.new_zeros((grid, *w.shape)) for w in weights)]
        present = [d.contiguous() if d is not None else grad for d in outputs]  # grad: unread
        _backward_kernel[(grid,)](
            loss, grad, h, c, f, i, theta, *weights, *present, *d_inputs, *partials,
            n, hidden, p, math.exp(-p), math.exp(p), num_blocks,
            HP=padded_width(hidden), BLOCK=block, PRECISION=precision,
            HAS_D_H=d_h_new is not None, HAS_D_C=d_c_new is not None,
            HAS_D_F=d_f_new is not None, HAS_D_I=d_i_new is not None,
            HAS_D_THETA=d_theta_new is not None,
            num_stages=BACKWARD_STAGES,
        )  # fmt: skip
        d_loss, *d_weights = (part.sum(0) for part in partials)
        return (d_loss.reshape(ctx.loss_shape), *d_inputs, *d_weights, *(None,) * 5)


# ------------------------------------------------------------------------------------------------
# Reference, kernel, dispatch
# ------------------------------------------------------------------------------------------------


def meta_lstm_step_reference(
    params: Params, state: MetaLearnerState, loss: Tensor, grad: Tensor, p: float = P_PAPER
) -> MetaLearnerState:
    """The definition: the library's :func:`~metalearn_edu.meta_lstm.meta_learner_step`."""
    return meta_learner_step(params, state, loss, grad, p, use_triton=False)


def meta_lstm_step_triton(
    params: Params,
    state: MetaLearnerState,
    loss: Tensor,
    grad: Tensor,
    p: float = P_PAPER,
    *,
    block: int = FORWARD_BLOCK,
    backward_block: int = BACKWARD_BLOCK,
    programs: int | None = None,
    precision: str = PRECISION,
) -> MetaLearnerState:
    """The same step as :func:`meta_lstm_step_reference`, by the fused kernels (float32).
    ``block`` and ``backward_block`` are coordinates per program (powers of two, at least 16),
    ``programs`` the backward grid, ``precision`` that of ``tl.dot``."""
    for size in (block, backward_block):
        if size < 16 or size & (size - 1):
            raise ValueError(f"block sizes must be powers of two >= 16, got {size}.")
    if loss.numel() != 1:
        raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}.")
    outputs = MetaLSTMStep.apply(
        loss, grad, *state, *(params[name] for name in WEIGHT_NAMES),
        float(p), block, backward_block, programs, precision,
    )  # fmt: skip
    return MetaLearnerState(*outputs)


def fused_step_applies(
    params: Params,
    state: MetaLearnerState,
    loss: Tensor,
    grad: Tensor,
    *,
    use_triton: bool | None = None,
) -> bool:
    """Whether :func:`~metalearn_edu.meta_lstm.meta_learner_step` runs the fused kernel: float32
    tensors and :func:`~metalearn_edu.kernels.use_triton`'s conditions (not switched off; a
    CUDA device).

    Automatically (``use_triton=None``) only on a GPU: on the CPU the reference runs even under
    ``TRITON_INTERPRET=1``, because the interpreter, a checking tool, is hundreds of times slower
    than PyTorch; ``use_triton=True`` runs it there (and raises where it cannot run at all);
    ``use_triton=False`` never runs it."""
    if use_triton is False or (use_triton is None and grad.device.type != "cuda"):
        return False
    tensors = [loss, grad, *state, *(params[name] for name in WEIGHT_NAMES)]
    if any(t.dtype != torch.float32 for t in tensors):
        if use_triton:
            raise RuntimeError(
                "the Triton kernel cannot run here: the fused step computes in float32; "
                "the tensors are not all float32."
            )
        return False
    return _use_triton(*tensors, use_triton=use_triton)
