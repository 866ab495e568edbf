"""Interactive figures: sliders wired to a plotting function, always with a static figure too.

A widget here is only wiring. The figure comes from a plotting function that returns a matplotlib
``Figure`` and is unit-tested on its own; :func:`interact` shows that figure once at the sliders'
initial values (the static fallback a reader without a live kernel sees) and then, where a kernel
with ipywidgets runs, the sliders that redraw it. :func:`check_extremes` tries the plotting
function at every corner of the sliders' ranges, for the tests.

Every slider starts on its own step grid: an initial value off the grid makes the browser echo a
corrected value back and redraw once for nothing, so :class:`Slider` refuses one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from metalearn_edu.display import show


@dataclass(frozen=True)
class Slider:
    """A numeric slider: ``min <= value <= max``, all on the grid ``min + k * step``."""

    name: str
    min: float
    max: float
    step: float
    value: float
    description: str | None = None

    def __post_init__(self) -> None:
        if not self.min < self.max:
            raise ValueError(
                f"slider {self.name!r}: min ({self.min}) must be below max ({self.max})."
            )
        if not self.step > 0:
            raise ValueError(f"slider {self.name!r}: step must be positive, got {self.step}.")
        for label, v in (("max", self.max), ("value", self.value)):
            if not self.on_grid(v):
                raise ValueError(
                    f"slider {self.name!r}: {label}={v} is not on the grid min + k*step "
                    f"({self.min} + k*{self.step}); the nearest grid value is {self.snap(v)}."
                )
        if not self.min <= self.value <= self.max:
            raise ValueError(
                f"slider {self.name!r}: value {self.value} is outside [{self.min}, {self.max}]."
            )

    @property
    def is_integer(self) -> bool:
        return all(float(v).is_integer() for v in (self.min, self.max, self.step, self.value))

    def on_grid(self, v: float) -> bool:
        k = (v - self.min) / self.step
        return math.isclose(k, round(k), abs_tol=1e-9)

    def snap(self, v: float) -> float:
        return self.min + round((v - self.min) / self.step) * self.step

    def extremes(self) -> tuple[float, float]:
        return (self.min, self.max)

    def widget(self) -> Any:
        import ipywidgets as w

        cls = w.IntSlider if self.is_integer else w.FloatSlider
        cast = int if self.is_integer else float
        return cls(
            value=cast(self.value),
            min=cast(self.min),
            max=cast(self.max),
            step=cast(self.step),
            description=self.description or self.name,
            continuous_update=False,
            style={"description_width": "initial"},
        )


def _kwargs(sliders: Sequence[Slider], values: Sequence[float]) -> dict[str, float]:
    return {
        s.name: (int(v) if s.is_integer else float(v)) for s, v in zip(sliders, values, strict=True)
    }


def interact(
    plot: Callable[..., Figure], sliders: Sequence[Slider], static: bool = True, **fixed: Any
) -> Any:
    """Show ``plot(**fixed, **slider_values)`` as a static figure, then sliders that redraw it.

    Returns the ipywidgets container (or ``None`` where ipywidgets is unavailable: the static
    figure is then all there is, and enough to follow the text).
    """
    names = [s.name for s in sliders]
    if len(set(names)) != len(names):
        raise ValueError(f"slider names must be unique, got {names}.")
    initial = _kwargs(sliders, [s.value for s in sliders])
    if static:
        show(plot(**fixed, **initial))
    try:
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        return None
    controls = {s.name: s.widget() for s in sliders}
    output = w.Output()

    def redraw(**values: Any) -> None:
        with output:
            output.clear_output(wait=True)
            show(plot(**fixed, **values))

    w.interactive_output(redraw, controls)
    box = w.VBox([w.HBox(list(controls.values())), output])
    display(box)
    return box


def check_extremes(
    plot: Callable[..., Figure], sliders: Sequence[Slider], **fixed: Any
) -> list[dict[str, float]]:
    """Call ``plot`` at the initial values and at every corner of the sliders' ranges.

    Returns the settings tried; raises whatever the plotting function raises, or ``TypeError``
    when it does not return a Figure. Closes every figure it makes.
    """
    import matplotlib.pyplot as plt

    settings = [_kwargs(sliders, [s.value for s in sliders])]
    settings += [
        _kwargs(sliders, corner) for corner in itertools.product(*(s.extremes() for s in sliders))
    ]
    for values in settings:
        fig = plot(**fixed, **values)
        if not isinstance(fig, Figure):
            raise TypeError(f"plot(**{values}) returned {type(fig).__name__}, not a Figure.")
        plt.close(fig)
    return settings
