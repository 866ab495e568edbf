"""The four-block convolutional network of MAML (after Vinyals et al.), written functionally.

Each block is 3x3 convolution with ``hidden`` filters -> batch norm -> ReLU, then downsampling:

- ``downsample="stride"`` (the MAML code for Omniglot): the convolution has stride 2 with
  TensorFlow's 'SAME' padding (28 -> 14 -> 7 -> 4 -> 2), and the last feature map is averaged over
  space to a ``hidden``-dimensional vector;
- ``downsample="maxpool"`` (the paper's text, MiniImagenet): stride-1 convolution padded by 1, then
  2x2 max-pooling (28 -> 14 -> 7 -> 3 -> 1), flattened.

A linear head maps the features to ``ways`` logits. Convolutions and the head use Xavier-uniform
weights and zero biases, as the MAML code does (``xavier_initializer_conv2d``); batch-norm scales
start at 1 and shifts at 0 (the code learns only the shift; here both are parameters).

Batch norm uses the statistics of the data it is given (transductive, as MAML). With
``transductive=False`` and the support set passed as ``context``, statistics come from the support
set alone, so each query example is classified independently of the others.

``channels_last=True`` lays each convolution's input out channels-last (NHWC in memory, the
same tensor values): on a GPU, cuDNN's convolutions are faster on NHWC data, and a convolution
of NHWC input returns NHWC output, so the layout carries through batch norm and ReLU to the next
block (the first block's input, one channel, is the same in either layout). The conversion is
written as ``x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)`` because
``x.contiguous(memory_format=torch.channels_last)`` is not implemented under ``torch.func.vmap``.
What each MAML execution makes of it (seen by logging the layouts that reach the convolution
kernels): the loop and functional executions run NHWC convolutions; under vmap, functorch's
convolution batching rule hands the kernels NCHW tensors whether or not the weights are per-task,
so there the flag changes nothing but a few copies; under ``torch.compile`` the compiler chooses
the layouts itself (on a GPU it may convert convolutions to channels-last on its own).

``conv="matmul"`` computes each convolution as im2col (every 3x3 patch a column) and one matrix
product with the filters, instead of ``F.conv2d``: the same function (in float64 the layer outputs
and second-order meta-gradients agree within 1e-12, ``tests/test_conv_matmul.py``), for speed on a
GPU. Under ``vmap`` over tasks each task has its own adapted
filters, so ``F.conv2d`` becomes a *grouped* convolution (one group per task), and a second-order
meta-gradient differentiates its backward pass again; as matrix products the same work is a
batched GEMM per layer, for which cuBLAS uses tensor cores in tf32 and bf16. On a 2-core CPU it
is slower (Omniglot 5w1s, meta-batch 8, one meta-iteration: vmap 381 ms against 275, compiled
250 against 142); ``python -m metalearn_edu.bench --precision tf32,tf32+matmul`` measures it on a
GPU.

The logits come back in the parameters' dtype: under bfloat16 autocast (``precision="bf16"``,
:mod:`metalearn_edu.precision`) the network computes in bfloat16 and the losses and accuracies
are computed from float32 logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearn_edu.models.base import Params
from metalearn_edu.models.batchnorm import batch_norm

CONVS = ("conv2d", "matmul")


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding for one spatial dimension: (before, after), extra goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_as_matmul(x: Tensor, weight: Tensor, bias: Tensor, stride: int) -> Tensor:
    """``F.conv2d(x, weight, bias, stride=stride)`` (no padding) as im2col and a matrix product:
    ``out[n, o, l] = Σ_k weight[o, k] · cols[n, k, l] + bias[o]``, with ``k`` running over the
    input channels and the kernel's positions and ``l`` over the output pixels.

    The patches are gathered by strided slicing, one slice per kernel position, rather than by
    ``F.unfold``: with ``F.unfold``, the compiled second-order vmapped meta-gradient of Conv4
    corrupted memory on the CPU (Inductor, torch 2.11 and 2.13; found by the compiled test in
    ``tests/test_conv_matmul.py``).
    """
    kh, kw = weight.shape[-2:]
    out_h = (x.shape[-2] - kh) // stride + 1
    out_w = (x.shape[-1] - kw) // stride + 1
    patches = [
        x[..., i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride]
        for i in range(kh)
        for j in range(kw)
    ]
    cols = torch.stack(patches, dim=2).flatten(1, 2).flatten(-2)  # [n, C·kh·kw, out_h·out_w]
    out = torch.einsum("ok,nkl->nol", weight.flatten(1), cols) + bias[:, None]
    return out.unflatten(-1, (out_h, out_w))


def _channels_last(x: Tensor) -> Tensor:
    """The same [n, C, H, W] values, stored NHWC (a no-op when they already are)."""
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Conv4:
    """4 x [conv 3x3 -> batch norm -> ReLU (-> max-pool)] -> linear head to ``ways`` logits."""

    ways: int = 5
    in_channels: int = 1
    image_size: int = 28
    hidden: int = 64
    downsample: str = "stride"
    transductive: bool = True
    channels_last: bool = False
    conv: str = "conv2d"  # or "matmul": im2col and a matrix product (see the module docstring)

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {self.conv!r}.")
        if self.downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be 'stride' or 'maxpool', got {self.downsample!r}.")
        if min(self.ways, self.in_channels, self.image_size, self.hidden) < 1:
            raise ValueError(
                "Conv4 sizes (ways, in_channels, image_size, hidden) must be positive."
            )
        if self.downsample == "maxpool" and self.image_size < 16:
            raise ValueError(
                f"four 2x2 max-pools need images of at least 16 pixels, got {self.image_size}."
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def output_dim(self) -> int:
        return self.ways

    @property
    def head_names(self) -> tuple[str, ...]:
        return ("head.weight", "head.bias")

    def _feature_dim(self) -> int:
        if self.downsample == "stride":
            return self.hidden
        side = self.image_size
        for _ in range(4):
            side //= 2
        return self.hidden * side * side

    def init(self, generator: torch.Generator | None = None) -> Params:
        params: Params = {}
        channels = self.in_channels
        for i in range(4):
            fan_in, fan_out = channels * 9, self.hidden * 9
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            params[f"block{i}.conv.weight"] = torch.empty(self.hidden, channels, 3, 3).uniform_(
                -bound, bound, generator=generator
            )
            params[f"block{i}.conv.bias"] = torch.zeros(self.hidden)
            params[f"block{i}.norm.weight"] = torch.ones(self.hidden)
            params[f"block{i}.norm.bias"] = torch.zeros(self.hidden)
            channels = self.hidden
        features = self._feature_dim()
        bound = math.sqrt(6.0 / (features + self.ways))
        params["head.weight"] = torch.empty(self.ways, features).uniform_(
            -bound, bound, generator=generator
        )
        params["head.bias"] = torch.zeros(self.ways)
        return params

    def _conv(self, x: Tensor, w: Tensor, b: Tensor, stride: int, padding: int) -> Tensor:
        if self.conv == "matmul":
            return conv2d_as_matmul(F.pad(x, (padding,) * 4) if padding else x, w, b, stride)
        return F.conv2d(x, w, b, stride=stride, padding=padding)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The layers :meth:`layer_outputs` returns, input to output: four blocks, then the head."""
        return ("block0", "block1", "block2", "block3", "head")

    def forward(self, params: Params, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.layer_outputs(params, x, context)["head"]

    def layer_outputs(
        self, params: Params, x: Tensor, context: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Every layer's output for ``x``: ``blockI`` after its ReLU (and max-pool),
        ``[n, C, H, W]``, and ``head``, the logits ``[n, ways]``; ``forward`` is the ``head`` entry.
        These are the representations that Raghu et al. (2020) compare before and after the inner
        loop.
        """
        # Non-transductive: run the support set alongside; statistics come from its rows only.
        n_context = 0
        if not self.transductive and context is not None:
            n_context = context.shape[0]
            x = torch.cat([context, x])
        outputs: dict[str, Tensor] = {}
        for i in range(4):
            w, b = params[f"block{i}.conv.weight"], params[f"block{i}.conv.bias"]
            if self.channels_last:
                x = _channels_last(x)
            if self.downsample == "stride":
                top, bottom = _same_padding(x.shape[-2], 3, 2)
                left, right = _same_padding(x.shape[-1], 3, 2)
                x = self._conv(F.pad(x, (left, right, top, bottom)), w, b, stride=2, padding=0)
            else:
                x = self._conv(x, w, b, stride=1, padding=1)
            stats_from = x[:n_context] if n_context else None
            x = batch_norm(
                x, params[f"block{i}.norm.weight"], params[f"block{i}.norm.bias"], stats_from
            )
            x = torch.relu(x)
            if self.downsample == "maxpool":
                x = F.max_pool2d(x, 2)
            outputs[f"block{i}"] = x[n_context:]
        features = x.mean(dim=(-2, -1)) if self.downsample == "stride" else x.flatten(1)
        logits = F.linear(features, params["head.weight"], params["head.bias"])
        outputs["head"] = logits[n_context:].to(params["head.weight"].dtype)
        return outputs
