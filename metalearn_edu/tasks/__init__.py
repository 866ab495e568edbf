"""Task distributions and the episode format every algorithm consumes.

Every family implements ``TaskDistribution``: ``sample(meta_batch_size, generator) -> Episode``.
Importing this package imports neither matplotlib nor PIL.
"""

from metalearn_edu.tasks.episode import Episode, TaskDistribution
from metalearn_edu.tasks.linear import LinearTasks, least_squares, linear_loss
from metalearn_edu.tasks.omniglot import OmniglotTasks, omniglot_splits
from metalearn_edu.tasks.quadratic import (
    QuadraticTasks,
    quadratic_gradient,
    quadratic_loss,
    quadratic_minimum,
)
from metalearn_edu.tasks.sinusoid import SinusoidTasks

__all__ = [
    "Episode",
    "LinearTasks",
    "OmniglotTasks",
    "QuadraticTasks",
    "SinusoidTasks",
    "TaskDistribution",
    "least_squares",
    "linear_loss",
    "omniglot_splits",
    "quadratic_gradient",
    "quadratic_loss",
    "quadratic_minimum",
]
