"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016).

- :mod:`.preprocessing`: the log/sign map of gradients (p = 10, or the released code's 5);
- :mod:`.lstm_cell`: one LSTM cell as a pure function of a parameter ``dict``;
- :mod:`.lstm_optimizer`: the coordinate-wise two-layer LSTM optimizer m(∇, h; φ);
- :mod:`.unroll`: running it, and meta-training it by truncated BPTT on random quadratics;
- :mod:`.baselines`: SGD and Adam, and a learning-rate grid search;
- :mod:`.optimizee`: a small network (and a real data set) as the optimizee.
"""

from metalearn_edu.learned_optimizers.baselines import (
    final_loss_median,
    log_grid,
    run_adam,
    run_sgd,
    tune_learning_rate,
)
from metalearn_edu.learned_optimizers.comparison import compare_on_quadratics
from metalearn_edu.learned_optimizers.lstm_cell import init_lstm_cell, lstm_cell, zero_state
from metalearn_edu.learned_optimizers.lstm_optimizer import LSTMOptimizer, first_update
from metalearn_edu.learned_optimizers.optimizee import (
    accuracy_of,
    classification_objective,
    flatten_params,
    omniglot_classification,
    unflatten_params,
)
from metalearn_edu.learned_optimizers.preprocessing import P_PAPER, P_RELEASED_CODE, log_sign
from metalearn_edu.learned_optimizers.unroll import (
    detach_state,
    losses_and_gradient,
    meta_train_on_quadratics,
    meta_train_optimizer,
    quadratic_objective,
    run_learned_optimizer,
    truncated_meta_step,
    unroll,
)

__all__ = [
    "P_PAPER",
    "P_RELEASED_CODE",
    "LSTMOptimizer",
    "accuracy_of",
    "classification_objective",
    "compare_on_quadratics",
    "detach_state",
    "final_loss_median",
    "first_update",
    "flatten_params",
    "init_lstm_cell",
    "log_grid",
    "log_sign",
    "losses_and_gradient",
    "lstm_cell",
    "meta_train_on_quadratics",
    "meta_train_optimizer",
    "omniglot_classification",
    "quadratic_objective",
    "run_adam",
    "run_learned_optimizer",
    "run_sgd",
    "truncated_meta_step",
    "tune_learning_rate",
    "unflatten_params",
    "unroll",
    "zero_state",
]
