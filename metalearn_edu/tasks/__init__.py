"""Task distributions and the episode format every algorithm consumes."""

from metalearn_edu.tasks.episode import Episode, TaskDistribution

__all__ = ["Episode", "TaskDistribution"]
