"""Figures: every function returns a ``matplotlib.figure.Figure`` and never calls ``plt.show()``."""

from metalearn_edu.plots.tasks import draw_episode, draw_omniglot_alphabets, draw_sinusoid_family

__all__ = ["draw_episode", "draw_omniglot_alphabets", "draw_sinusoid_family"]
