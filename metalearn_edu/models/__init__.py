"""Functional models: parameters are a plain ``dict`` of named tensors, the forward pass a pure
function of them, so ``torch.autograd`` and ``torch.func`` both differentiate through it.

Every model provides:

- ``init(generator) -> dict[str, Tensor]``: fresh parameters (reproducible from the generator);
- ``forward(params, x, context=None) -> Tensor``: predictions for a batch ``x`` of one task;
  ``context`` (the task's support inputs) is only read by models whose batch norm is
  non-transductive;
- ``input_shape`` and ``output_dim``: checked against a task before training on it;
- ``head_names``: the parameters of the last layer (the only ones ANIL adapts).
"""

from metalearn_edu.models.base import FunctionalModel, check_episode
from metalearn_edu.models.batchnorm import batch_norm
from metalearn_edu.models.conv4 import Conv4
from metalearn_edu.models.mlp import MLP, optimizee_mlp, sinusoid_mlp

__all__ = [
    "MLP",
    "Conv4",
    "FunctionalModel",
    "batch_norm",
    "check_episode",
    "optimizee_mlp",
    "sinusoid_mlp",
]
