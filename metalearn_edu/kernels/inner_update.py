"""The differentiable inner update, MAML eq. (1) and Meta-SGD's rule, for all parameters of all
tasks in one Triton launch:

    θ'_i = θ − α ∘ ∇_θ L^support_{T_i}(f_θ)        (MAML: α a number; Meta-SGD: α has θ's shape)

and its backward, the vector-Jacobian product a meta-gradient takes through the update,

    dθ = Σ_i dθ'_i,      dg_i = −α ∘ dθ'_i,      dα = −Σ_i g_i ∘ dθ'_i

(g_i = ∇_θ L^support_{T_i}; the sums run over the tasks that share θ and α, and over the entries
of α when α is one number per parameter tensor). The second-order terms of MAML's meta-gradient
are not here: they flow from dg_i into the graph of g_i (``create_graph=True``), as they do for
the reference.

**Reference.** :func:`inner_update_reference` is the definition (PyTorch broadcasting, one
``θ − α * g`` per parameter tensor); :func:`metalearn_edu.inner_loop.sgd_step` uses it.

**Layout: a pointer table, no packing.** The kernel reads each parameter tensor where it lies.
The host writes one small int64 table (a row per parameter tensor: the addresses of θ, g, α and
the output, the entries per task ``n``, the number of tasks ``R``, and the strides that say
whether θ and α are per task or shared) and a list of (tensor, block) pairs, one per program.
Program ``p`` updates entries ``[start, start + BLOCK)`` of one parameter for every task, looping
over the tasks: θ and α shared by the tasks are read from the same addresses, and the reductions
of the backward over tasks happen in registers (deterministic, no atomics). The alternative, a
flat ``[tasks, P]`` buffer, would cost a full extra copy of θ, g and the result per step.

**Memory traffic** per parameter tensor (b bytes per entry, T tasks, n entries per task; see
:func:`bytes_moved`). Forward: read g (T·n·b), θ (n·b when shared by the tasks, as under ``vmap``
over tasks; T·n·b when per task), α (n·b for Meta-SGD, b for a number); write θ' (T·n·b). So
about 3 T n b for one task or per-task θ (12 bytes per float32 entry: the floor for a
read-read-write update) and (2T + 1) n b + α when θ is shared. Backward: read dθ' (T·n·b) and α;
write dg (T·n·b); dθ is dθ' itself when θ is per task (no traffic, the tensor is passed on) and
Σ_t dθ'_t (n·b written) when shared; a learned α adds reading g (T·n·b) and writing dα (n·b, or
one number per block). Packing the parameters into a flat buffer first would add a read and a
write of θ and g, and an unpacking copy of θ', before the update even starts.

**vmap and the other transforms of torch.func.** The update is a ``torch.autograd.Function``
with ``setup_context`` and a ``vmap`` rule, so it runs inside ``torch.func.grad`` and
``torch.func.vmap`` (MAML's ``functional`` and ``vmap`` executions). The rule moves the batch
dimension of ``vmap`` in front and launches the same kernel once for the whole batch: under
``vmap`` over tasks, one launch updates all parameters of all tasks, with θ and α read once per
entry when they are not batched. The backward is a second ``autograd.Function`` (its own kernel
and ``vmap`` rule), so it too runs batched; its own derivative (a third derivative of the task
loss, needed only for a derivative of the meta-gradient) is computed with PyTorch operations.

**When PyTorch runs instead.** Inside the autograd function, broadcast patterns other than "per
task" or "shared by the tasks" (they arise only from a ``vmap`` around an update that already
has a task dimension), operands of mixed dtypes and dtypes other than float16/bfloat16/float32/
float64 are computed with the reference's operations (one launch covers each dtype). With
``use_triton=None``, the reference runs while a CUDA graph is being captured (the launch uploads
its pointer table from the host); :func:`metalearn_edu.inner_loop.sgd_step` also keeps the
reference on the CPU and while ``torch.compile`` traces (Inductor fuses the reference itself).

**Why an autograd.Function and not torch.library.custom_op.** A custom op's ``register_autograd``
does not run under ``torch.func.grad`` (PyTorch 2.13 raises "must override the setup_context
staticmethod"), and MAML's ``functional`` and ``vmap`` executions need it; an ``autograd.Function``
with ``setup_context`` and a ``vmap`` staticmethod composes with ``grad`` and ``vmap`` alike.

**Rounding.** The kernel computes ``θ − (α · g)`` in the parameters' dtype, as PyTorch does,
and is compiled without fused multiply-add (``enable_fp_fusion=False``), so its forward is
bitwise the reference's; reductions over tasks are summed in another order (float32 tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metalearn_edu.kernels._dispatch import triton_available, use_triton

if triton_available():
    import triton
    import triton.language as tl

Params = dict[str, Tensor]
InnerLR = float | Mapping[str, Tensor]

BLOCK = 1024  # entries of one parameter tensor per program (4 KiB of float32 per operand)
NUM_WARPS = 4
_FORWARD_COLUMNS = 9  # θ, g, α, θ' addresses; n, R, θ row stride, α row stride, α entry stride
_BACKWARD_COLUMNS = 11  # dθ', g, α, dθ addresses; n, R, strides (as above); dg, dα addresses


def inner_update_reference(params: Params, grads: Params, inner_lr: InnerLR) -> Params:
    """θ' = θ − α ∘ g for each parameter named in ``grads`` (MAML eq. 1; Meta-SGD when ``inner_lr``
    maps names to tensors); the other parameters pass through. This is the definition the kernel
    is checked against: PyTorch broadcasting, so a θ without the task dimension of ``g`` is
    shared by the tasks."""
    updated = dict(params)
    for name, g in grads.items():
        lr = inner_lr[name] if isinstance(inner_lr, Mapping) else inner_lr
        updated[name] = params[name] - lr * g
    return updated


def inner_update(
    params: Params, grads: Params, inner_lr: InnerLR, *, use_triton: bool | None = None
) -> Params:
    """θ' = θ − α ∘ g (see :func:`inner_update_reference`), by the fused Triton kernel when
    :func:`metalearn_edu.kernels.use_triton` says it runs (``use_triton=None``: automatically;
    ``True``: required, with an error that says why it cannot run; ``False``: the reference)."""
    tensors = [params[n] for n in grads] + list(grads.values())
    if isinstance(inner_lr, Mapping):
        tensors += [inner_lr[n] for n in grads]
    if _use_triton_for(tensors, use_triton):
        return fused_inner_update(params, grads, inner_lr)
    return inner_update_reference(params, grads, inner_lr)


def _use_triton_for(tensors: list[Tensor], choice: bool | None) -> bool:
    # Plain checks first: under torch.compile (torch 2.11) Dynamo could not trace ``bool(list)``
    # here, and that one graph break made the whole compiled meta-gradient run eagerly.
    if choice is False or not tensors:
        return False
    if choice is None and _capturing(tensors):
        return False  # the launch uploads its pointer table from the host: not graph-safe
    return use_triton(*tensors, use_triton=choice)


def _capturing(tensors: Sequence[Tensor]) -> bool:
    on_cuda = any(t.device.type == "cuda" for t in tensors)
    return on_cuda and torch.cuda.is_current_stream_capturing()


def fused_inner_update(params: Params, grads: Params, inner_lr: InnerLR) -> Params:
    """θ' = θ − α ∘ g for all parameters named in ``grads``, in one kernel launch per dtype.

    Differentiable (the backward is a kernel too), and usable inside ``torch.func.grad`` and
    ``torch.func.vmap`` (under ``vmap`` over tasks, one launch covers all tasks). Requires Triton
    and CUDA tensors, or CPU tensors with ``TRITON_INTERPRET=1``.
    """
    names = list(grads)
    if not names:
        return dict(params)
    use_triton(*(params[n] for n in names), use_triton=True)  # raises, saying why, if it can't run
    if _capturing([grads[n] for n in names]):
        raise RuntimeError(
            "the fused inner update cannot be captured in a CUDA graph (it uploads a pointer "
            "table from the host at each call); use the reference (use_triton=False)."
        )
    if isinstance(inner_lr, Mapping):
        alphas = [inner_lr[n] for n in names]
    else:
        constants: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        for g in (grads[n] for n in names):  # α in each gradient's dtype, as PyTorch rounds it
            if (g.dtype, g.device) not in constants:
                constants[g.dtype, g.device] = _constant(float(inner_lr), g.dtype, g.device)
        alphas = [constants[grads[n].dtype, grads[n].device] for n in names]
    outputs = _InnerUpdate.apply(
        len(names), *(params[n] for n in names), *(grads[n] for n in names), *alphas
    )
    return {**params, **dict(zip(names, outputs, strict=True))}


def _constant(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.full((), value, dtype=dtype, device=device)


# --- layout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How the kernel reads one parameter's update: the output is ``rows × n`` entries (rows =
    tasks, n = the parameter's own entries); θ is per task (``theta_row_stride == n``) or shared
    by the tasks (0). α, and the shape its gradient is summed to, is per entry and per task
    ``(n, 1)``, per entry and shared ``(0, 1)``, one number per task ``(1, 0)`` or one number
    ``(0, 0)``, as (row stride, entry stride)."""

    rows: int
    n: int
    theta_row_stride: int
    alpha_strides: tuple[int, int]
    dalpha_strides: tuple[int, int]


def layout(
    out_shape: Sequence[int],
    theta_shape: Sequence[int],
    alpha_shape: Sequence[int],
    dalpha_shape: Sequence[int] | None = None,
) -> Layout | None:
    """The :class:`Layout` of ``θ − α * g`` for these broadcast shapes (``dalpha_shape``: the shape
    dα is summed to, α's by default), or ``None`` when the kernel does not cover the pattern (the
    caller then uses PyTorch). Splits ``out_shape`` into leading task dimensions and the
    parameter's own, with as few task dimensions as will do."""
    out = tuple(out_shape)
    dalpha_shape = alpha_shape if dalpha_shape is None else dalpha_shape
    for split in range(len(out) + 1):
        lead, own = out[:split], out[split:]
        rows, n = math.prod(lead), math.prod(own)
        theta = _role(tuple(theta_shape), lead, own)
        alpha = _role(tuple(alpha_shape), lead, own)
        dalpha = _role(tuple(dalpha_shape), lead, own)
        if theta in ("full", "shared") and alpha is not None and dalpha is not None:
            strides = {"full": (n, 1), "shared": (0, 1), "row": (1, 0), "scalar": (0, 0)}
            theta_stride = n if theta == "full" else 0
            return Layout(rows, n, theta_stride, strides[alpha], strides[dalpha])
    return None


def _role(shape: tuple[int, ...], lead: tuple[int, ...], own: tuple[int, ...]) -> str | None:
    """Whether an operand of this shape is full, shared by the rows, one per row, or a scalar."""
    out = lead + own
    if len(shape) > len(out):
        return None
    padded = (1,) * (len(out) - len(shape)) + shape
    if padded == out:
        return "full"
    if padded == (1,) * len(lead) + own:
        return "shared"
    if math.prod(shape) == 1:
        return "scalar"
    if padded == lead + (1,) * len(own):
        return "row"
    return None


def bytes_moved(
    num_tasks: int,
    n: int,
    element_size: int,
    *,
    theta_shared: bool,
    alpha: str,
    alpha_grad: bool = False,
) -> dict[str, int]:
    """Bytes the forward and backward kernels must read plus write for one parameter tensor of
    ``n`` entries updated for ``num_tasks`` tasks; ``alpha`` is ``"scalar"`` (MAML) or
    ``"entry"`` (Meta-SGD, shared by the tasks). The compulsory traffic: each operand once."""
    if alpha not in ("scalar", "entry"):
        raise ValueError(f"alpha must be 'scalar' or 'entry', got {alpha!r}.")
    tn = num_tasks * n
    alpha_bytes = n * element_size if alpha == "entry" else element_size
    theta_bytes = (n if theta_shared else tn) * element_size
    forward = theta_bytes + 2 * tn * element_size + alpha_bytes  # read θ, g, α; write θ'
    backward = 2 * tn * element_size + alpha_bytes  # read dθ', α; write dg
    if theta_shared:
        backward += n * element_size  # write dθ = Σ_tasks dθ'
    if alpha_grad:
        backward += tn * element_size + alpha_bytes  # read g; write dα
    return {"forward": forward, "backward": backward}


# --- the Triton kernels ----------------------------------------------------------------------

if triton_available():

    @triton.jit
    def _inner_update_forward_kernel(
        table,  # int64 [tensors, 9]: θ, g, α, θ' addresses; n, R, θ row stride, α strides
        programs,  # int64 [programs, 2]: (tensor, first entry) of each program
        DTYPE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        row = table + tl.load(programs + 2 * pid) * 9
        theta = tl.load(row + 0).to(tl.pointer_type(DTYPE))
        grad = tl.load(row + 1).to(tl.pointer_type(DTYPE))
        alpha = tl.load(row + 2).to(tl.pointer_type(DTYPE))
        out = tl.load(row + 3).to(tl.pointer_type(DTYPE))
        n = tl.load(row + 4)
        rows = tl.load(row + 5)
        theta_stride = tl.load(row + 6)
        alpha_stride = tl.load(row + 7)
        alpha_entry = tl.load(row + 8)
        j = tl.load(programs + 2 * pid + 1) + tl.arange(0, BLOCK)
        mask = j < n
        for t in range(rows):  # every task t: θ'_t = θ_t − α_t ∘ g_t
            th = tl.load(theta + t * theta_stride + j, mask=mask)
            g = tl.load(grad + t * n + j, mask=mask)
            a = tl.load(alpha + t * alpha_stride + j * alpha_entry, mask=mask)
            tl.store(out + t * n + j, th - a * g, mask=mask)

    @triton.jit
    def _inner_update_backward_kernel(
        table,  # int64 [tensors, 13]: dθ', g, α, dθ, dg, dα addresses; n, R; α strides, flags
        programs,  # int64 [programs, 2]: (tensor, first entry) of each program
        partials,  # [programs, max_rows]: this block's Σ −g ∘ dθ' per task (α one number)
        max_rows,
        DTYPE: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK: tl.constexpr,
        NEED_DTHETA: tl.constexpr,
        NEED_DGRAD: tl.constexpr,
        NEED_DALPHA: tl.constexpr,
    ):
        pid = tl.program_id(0)
        row = table + tl.load(programs + 2 * pid) * 13
        dout = tl.load(row + 0).to(tl.pointer_type(DTYPE))
        grad = tl.load(row + 1).to(tl.pointer_type(DTYPE))
        alpha = tl.load(row + 2).to(tl.pointer_type(DTYPE))
        dtheta = tl.load(row + 3).to(tl.pointer_type(DTYPE))
        dgrad = tl.load(row + 4).to(tl.pointer_type(DTYPE))
        dalpha = tl.load(row + 5).to(tl.pointer_type(DTYPE))
        n = tl.load(row + 6)
        rows = tl.load(row + 7)
        alpha_stride = tl.load(row + 9)
        alpha_entry = tl.load(row + 10)
        # 0/1 flags: write dθ = Σ_t dθ'_t (θ shared by the tasks; else dθ = dθ', passed on by the
        # host); dα per task and entry; dα per entry, summed over the tasks
        theta_shared = tl.load(row + 8)
        dalpha_per_task = tl.load(row + 11)
        dalpha_shared = tl.load(row + 12)
        j = tl.load(programs + 2 * pid + 1) + tl.arange(0, BLOCK)
        mask = j < n
        sum_dtheta = tl.zeros([BLOCK], dtype=ACC)
        sum_dalpha = tl.zeros([BLOCK], dtype=ACC)
        for t in range(rows):
            d = tl.load(dout + t * n + j, mask=mask, other=0.0)
            if NEED_DGRAD:  # dg_t = −α_t ∘ dθ'_t
                a = tl.load(alpha + t * alpha_stride + j * alpha_entry, mask=mask)
                tl.store(dgrad + t * n + j, -d * a, mask=mask)
            if NEED_DTHETA:  # dθ = Σ_t dθ'_t
                sum_dtheta += d.to(ACC)
            if NEED_DALPHA:  # dα = −g_t ∘ dθ'_t, summed over what α is shared by
                da = -d * tl.load(grad + t * n + j, mask=mask, other=0.0)
                tl.store(dalpha + t * n + j, da, mask=j < n * dalpha_per_task)
                sum_dalpha += da.to(ACC)
                tl.store(partials + pid * max_rows + t, tl.sum(da.to(ACC), axis=0))
        if NEED_DTHETA:
            tl.store(dtheta + j, sum_dtheta.to(DTYPE), mask=j < n * theta_shared)
        if NEED_DALPHA:
            tl.store(dalpha + j, sum_dalpha.to(DTYPE), mask=j < n * dalpha_shared)


def _triton_dtype(dtype: torch.dtype) -> Any:
    names = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16"}
    names[torch.bfloat16] = "bfloat16"
    return getattr(tl, names[dtype]) if dtype in names and triton_available() else None


def _launch_tables(
    rows: list[list[int]], layouts: Sequence[Layout], device: torch.device
) -> tuple[Tensor, Tensor, int]:
    """Upload the per-tensor table and the (tensor, first entry) of each of the ⌈n / BLOCK⌉
    programs per tensor, in one host-to-device copy."""
    programs = [[k, start] for k, lay in enumerate(layouts) for start in range(0, lay.n, BLOCK)]
    flat = [x for r in rows for x in r] + [x for p in programs for x in p]
    both = torch.tensor(flat, dtype=torch.int64).to(device, non_blocking=True)
    split = sum(len(r) for r in rows)
    return both[:split], both[split:], len(programs)


# --- one launch, forward and backward (plain tensors: the autograd functions below call these) --


def _forward(
    thetas: Sequence[Tensor], grads: Sequence[Tensor], alphas: Sequence[Tensor]
) -> list[Tensor]:
    """θ − α * g for each triple (PyTorch broadcasting), one kernel launch per dtype."""
    outs: list[Tensor | None] = [None] * len(thetas)
    groups: dict[torch.dtype, list[tuple[int, Layout, Tensor, Tensor, Tensor]]] = {}
    for k, (th, g, a) in enumerate(zip(thetas, grads, alphas, strict=True)):
        shape = torch.broadcast_shapes(th.shape, g.shape, a.shape)
        lay = layout(shape, th.shape, a.shape)
        if lay is None or not _kernel_can_take(shape, th, g, a):
            outs[k] = th - a * g  # the reference, for the patterns the kernel does not cover
            continue
        g = g.expand(shape).contiguous()  # no copy unless g itself is broadcast
        groups.setdefault(g.dtype, []).append((k, lay, th.contiguous(), g, a.contiguous()))
    for dtype, members in groups.items():
        rows = []
        for k, lay, th, g, a in members:
            out = outs[k] = torch.empty_like(g)
            pointers = [th.data_ptr(), g.data_ptr(), a.data_ptr(), out.data_ptr()]
            rows.append([*pointers, lay.n, lay.rows, lay.theta_row_stride, *lay.alpha_strides])
        layouts = [m[1] for m in members]
        table, programs, num_programs = _launch_tables(rows, layouts, members[0][3].device)
        _inner_update_forward_kernel[(num_programs,)](
            table,
            programs,
            _triton_dtype(dtype),
            BLOCK=BLOCK,
            num_warps=NUM_WARPS,
            enable_fp_fusion=False,
        )
    return outs  # type: ignore[return-value]


def _kernel_can_take(shape: torch.Size, *tensors: Tensor) -> bool:
    first = tensors[0]
    return (
        math.prod(shape) > 0
        and _triton_dtype(first.dtype) is not None
        and all(t.dtype == first.dtype and t.device == first.device for t in tensors)
    )


Shape = tuple[int, ...]


def _backward(
    douts: Sequence[Tensor],
    grads: Sequence[Tensor],
    alphas: Sequence[Tensor],
    theta_shapes: Sequence[Shape | None],
    grad_shapes: Sequence[Shape | None],
    alpha_shapes: Sequence[Shape | None],
) -> tuple[list[Tensor | None], list[Tensor | None], list[Tensor | None]]:
    """The vector-Jacobian product of θ' = θ − α * g, each summed to the shape asked for (``None``:
    not needed): dθ = Σ dθ', dg = −α ∘ dθ', dα = −Σ g ∘ dθ'. One kernel launch per dtype."""
    count = len(douts)
    dthetas: list[Tensor | None] = [None] * count
    dgrads: list[Tensor | None] = [None] * count
    dalphas: list[Tensor | None] = [None] * count
    groups: dict[torch.dtype, list[tuple[int, Layout, Tensor, Tensor, Tensor]]] = {}
    for k in range(count):
        if theta_shapes[k] is None and grad_shapes[k] is None and alpha_shapes[k] is None:
            continue
        d, g, a = douts[k], grads[k], alphas[k]
        shape = d.shape
        theta_shape = shape if theta_shapes[k] is None else theta_shapes[k]
        alpha_shape = a.shape if alpha_shapes[k] is None else alpha_shapes[k]
        lay = layout(shape, theta_shape, a.shape, alpha_shape)
        g_full = grad_shapes[k] is None or tuple(grad_shapes[k]) == tuple(shape)
        if lay is None or not g_full or not _kernel_can_take(shape, d, g, a):
            if theta_shapes[k] is not None:
                dthetas[k] = d.sum_to_size(theta_shapes[k]).clone()
            if grad_shapes[k] is not None:
                dgrads[k] = (-d * a).sum_to_size(grad_shapes[k])
            if alpha_shapes[k] is not None:
                dalphas[k] = (-d * g).sum_to_size(alpha_shapes[k])
            continue
        if theta_shapes[k] is not None and lay.theta_row_stride != 0:
            dthetas[k] = d.reshape(theta_shapes[k]).clone()  # dθ = dθ': nothing to sum
        g = g.expand(shape).contiguous() if alpha_shapes[k] is not None else d
        groups.setdefault(d.dtype, []).append((k, lay, d.contiguous(), g, a.contiguous()))

    for dtype, members in groups.items():
        rows, outputs = [], []
        for k, lay, d, g, a in members:
            dth = d  # a placeholder address where nothing is written
            if theta_shapes[k] is not None and lay.theta_row_stride == 0:
                dth = torch.empty(lay.n, dtype=dtype, device=d.device)
            dg = torch.empty_like(d) if grad_shapes[k] is not None else d
            da = d
            if alpha_shapes[k] is not None and lay.dalpha_strides[1] == 1:
                da = torch.empty(alpha_shapes[k], dtype=dtype, device=d.device)
            outputs.append((dth, dg, da))
            pointers = [p.data_ptr() for p in (d, g, a, dth, dg, da)]
            flags = [
                int(lay.theta_row_stride == 0),
                *lay.alpha_strides,
                int(lay.dalpha_strides[0] != 0 and lay.dalpha_strides[1] == 1),
                int(lay.dalpha_strides == (0, 1)),
            ]
            rows.append([*pointers, lay.n, lay.rows, *flags])
        layouts = [m[1] for m in members]
        device = members[0][2].device
        table, programs, num_programs = _launch_tables(rows, layouts, device)
        max_rows = max(lay.rows for lay in layouts)
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        partials = torch.empty(num_programs, max_rows, dtype=acc, device=device)
        _inner_update_backward_kernel[(num_programs,)](
            table,
            programs,
            partials,
            max_rows,
            _triton_dtype(dtype),
            _triton_dtype(acc),
            BLOCK=BLOCK,
            NEED_DTHETA=any(o[0] is not m[2] for o, m in zip(outputs, members, strict=True)),
            NEED_DGRAD=any(grad_shapes[m[0]] is not None for m in members),
            NEED_DALPHA=any(alpha_shapes[m[0]] is not None for m in members),
            num_warps=NUM_WARPS,
            enable_fp_fusion=False,
        )
        first = 0
        for (k, lay, d, _, _), (dth, dg, da) in zip(members, outputs, strict=True):
            blocks = slice(first, first + math.ceil(lay.n / BLOCK))
            first = blocks.stop
            if dth is not d:
                dthetas[k] = dth.reshape(theta_shapes[k])  # type: ignore[arg-type]
            if grad_shapes[k] is not None:
                dgrads[k] = dg
            if alpha_shapes[k] is not None:
                if lay.dalpha_strides[1] == 0:  # one α per task, or one in all: add block sums
                    per_task = partials[blocks, : lay.rows].sum(dim=0)
                    da = per_task if lay.dalpha_strides[0] else per_task.sum()
                dalphas[k] = da.to(dtype).reshape(alpha_shapes[k])  # type: ignore[arg-type]
    return dthetas, dgrads, dalphas


# --- autograd and vmap -------------------------------------------------------------------------


def _batch_first(x: Tensor, dim: int | None, batch: int, ndim: int) -> Tensor:
    """A ``vmap`` operand as a plain tensor that broadcasts right: the batch dimension first, then
    the logical shape padded with ones to ``ndim`` dimensions (unbatched operands are unchanged)."""
    if dim is None:
        return x
    x = x.movedim(dim, 0)
    return x.reshape(batch, *(1,) * (ndim - (x.dim() - 1)), *x.shape[1:])


class _InnerUpdate(torch.autograd.Function):
    """θ'_k = θ_k − α_k * g_k for k < count; inputs ``count, *θ, *g, *α``, outputs ``*θ'``."""

    @staticmethod
    def forward(count: int, *tensors: Tensor) -> tuple[Tensor, ...]:
        thetas, grads, alphas = tensors[:count], tensors[count : 2 * count], tensors[2 * count :]
        return tuple(_forward(thetas, grads, alphas))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        count, *tensors = inputs
        ctx.count = count
        ctx.shapes = tuple(tuple(t.shape) for t in tensors)
        ctx.save_for_backward(*tensors[count:])  # g and α; θ is not needed

    @staticmethod
    def backward(ctx: Any, *douts: Tensor) -> tuple[Tensor | None, ...]:
        count, shapes = ctx.count, ctx.shapes
        saved = ctx.saved_tensors
        grads, alphas = saved[:count], saved[count:]
        need = ctx.needs_input_grad[1:]
        theta_shapes = []
        for k in range(count):  # dθ = dθ' when θ has the output's shape: no kernel work
            full = need[k] and shapes[k] == tuple(douts[k].shape)
            theta_shapes.append(shapes[k] if need[k] and not full else None)
        grad_shapes = [shapes[count + k] if need[count + k] else None for k in range(count)]
        alpha_shapes = [
            shapes[2 * count + k] if need[2 * count + k] else None for k in range(count)
        ]
        spec = (tuple(theta_shapes), tuple(grad_shapes), tuple(alpha_shapes))
        result: tuple[Tensor | None, ...] = (None,) * (3 * count)
        if any(x is not None for shapes_of in spec for x in shapes_of):  # else: dθ = dθ' only
            result = _InnerUpdateBackward.apply(count, spec, *douts, *grads, *alphas)
        dthetas = [
            (d if theta_shapes[k] is None else result[k]) if need[k] else None
            for k, d in enumerate(douts)
        ]
        return (None, *dthetas, *result[count:])

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], count: int, *tensors: Tensor) -> tuple[Any, Any]:
        batched, out_dims = list(tensors), []
        for k in range(count):
            members = (k, count + k, 2 * count + k)
            dims = [in_dims[1 + m] for m in members]
            logical = [
                tensors[m].dim() - (d is not None) for m, d in zip(members, dims, strict=True)
            ]
            for m, d in zip(members, dims, strict=True):
                batched[m] = _batch_first(tensors[m], d, info.batch_size, max(logical))
            out_dims.append(0 if any(d is not None for d in dims) else None)
        return _InnerUpdate.apply(count, *batched), tuple(out_dims)


class _InnerUpdateBackward(torch.autograd.Function):
    """The backward of :class:`_InnerUpdate` as a function of its own (inputs ``count, spec, *dθ',
    *g, *α``; ``spec`` holds the shapes dθ, dg and dα are summed to, or ``None``), so that it runs
    under ``vmap`` too. Its own backward, used only for derivatives of a meta-gradient, is
    written with PyTorch operations."""

    @staticmethod
    def forward(count: int, spec: Any, *tensors: Tensor) -> tuple[Tensor | None, ...]:
        douts, grads, alphas = tensors[:count], tensors[count : 2 * count], tensors[2 * count :]
        dthetas, dgrads, dalphas = _backward(douts, grads, alphas, *spec)
        return (*dthetas, *dgrads, *dalphas)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        count, spec, *tensors = inputs
        ctx.count, ctx.spec = count, spec
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx: Any, *cotangents: Tensor | None) -> tuple[Tensor | None, ...]:
        count = ctx.count
        saved = ctx.saved_tensors
        douts, grads, alphas = saved[:count], saved[count : 2 * count], saved[2 * count :]
        c_theta, c_grad, c_alpha = (cotangents[i * count : (i + 1) * count] for i in range(3))
        need = ctx.needs_input_grad[2:]
        results: list[Tensor | None] = [None] * (3 * count)
        for k in range(count):
            d, g, a = douts[k], grads[k], alphas[k]
            ddout = torch.zeros_like(d)
            if c_theta[k] is not None:
                ddout = ddout + c_theta[k]
            if c_grad[k] is not None:
                ddout = ddout - a * c_grad[k]
                if need[2 * count + k]:
                    results[2 * count + k] = (-d * c_grad[k]).sum_to_size(a.shape)
            if c_alpha[k] is not None:
                ddout = ddout - g * c_alpha[k]
                if need[count + k]:
                    results[count + k] = (-d * c_alpha[k]).sum_to_size(g.shape)
            results[k] = ddout if need[k] else None
        return (None, None, *results)

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Any, ...], count: int, spec: Any, *tensors: Tensor
    ) -> tuple[Any, Any]:
        batch = info.batch_size
        batched, specs, out_dims = list(tensors), [list(s) for s in spec], []
        for k in range(count):
            members = (k, count + k, 2 * count + k)
            dims = [in_dims[2 + m] for m in members]
            ndim = tensors[k].dim() - (dims[0] is not None)  # dθ' has the output's shape
            for m, d in zip(members, dims, strict=True):
                batched[m] = _batch_first(tensors[m], d, batch, ndim)
            any_batched = any(d is not None for d in dims)
            if any_batched and dims[0] is None:
                batched[k] = tensors[k].expand(batch, *tensors[k].shape)
            for s in specs:  # every gradient of a batched call is per batch member
                if any_batched and s[k] is not None:
                    s[k] = (batch, *(1,) * (ndim - len(s[k])), *s[k])
            out_dims.append(0 if any_batched else None)
        result = _InnerUpdateBackward.apply(count, tuple(tuple(s) for s in specs), *batched)
        unbatched = []
        for i, r in enumerate(result):
            k, which = i % count, i // count
            if r is not None and out_dims[k] == 0:
                r = r.reshape(batch, *spec[which][k])
            unbatched.append(r)
        dims_out = tuple(
            out_dims[i % count] if r is not None else None for i, r in enumerate(result)
        )
        return tuple(unbatched), dims_out
