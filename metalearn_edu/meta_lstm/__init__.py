"""The Meta-LSTM of Ravi & Larochelle (2017), "Optimization as a Model for Few-Shot Learning".

- :mod:`.cell`: one step of the two-layer coordinate-wise meta-learner; its cell state is the
  learner's parameter vector (eq. 2);
- :mod:`.algorithm`: :class:`MetaLSTM`, episodes, the meta-gradient (clipped to norm 0.25) and
  the interface :func:`~metalearn_edu.training.meta_train` and
  :func:`~metalearn_edu.evaluation.evaluate` expect;
- :mod:`.analysis`: SGD as pinned gates (the learned schedule over many tasks is read by
  :mod:`metalearn_edu.gate_schedule`).
"""

from metalearn_edu.meta_lstm.algorithm import (
    LEARNER_PREFIX,
    MetaLSTM,
    MetaLSTMTrace,
    gates_by_parameter,
)
from metalearn_edu.meta_lstm.analysis import pin_gates
from metalearn_edu.meta_lstm.cell import (
    MetaLearnerState,
    cell_update,
    gates,
    init_meta_learner,
    initial_state,
    meta_learner_step,
)

__all__ = [
    "LEARNER_PREFIX",
    "MetaLSTM",
    "MetaLSTMTrace",
    "MetaLearnerState",
    "cell_update",
    "gates",
    "gates_by_parameter",
    "init_meta_learner",
    "initial_state",
    "meta_learner_step",
    "pin_gates",
]
