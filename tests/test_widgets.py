import ipywidgets
import pytest
from matplotlib.figure import Figure

from metalearn_edu.widgets import Slider, check_extremes, interact


def line_plot(slope: float, points: int, title: str = "") -> Figure:
    fig = Figure()
    ax = fig.add_subplot()
    ax.plot(range(points), [slope * i for i in range(points)])
    ax.set_title(title)
    return fig


SLIDERS = [Slider("slope", -2.0, 2.0, 0.5, 1.0), Slider("points", 2, 20, 1, 10)]


def test_sliders_must_start_on_their_grid():
    with pytest.raises(
        ValueError, match=r"value=0.3 is not on the grid .* nearest grid value is 0.5"
    ):
        Slider("slope", -2.0, 2.0, 0.5, 0.3)
    with pytest.raises(ValueError, match=r"max=1\.9 is not on the grid"):
        Slider("slope", -2.0, 1.9, 0.5, 0.0)
    with pytest.raises(ValueError, match="outside"):
        Slider("slope", -2.0, 2.0, 0.5, 2.5)
    with pytest.raises(ValueError, match=r"min .* must be below max"):
        Slider("slope", 2.0, 2.0, 0.5, 2.0)
    with pytest.raises(ValueError, match="step must be positive"):
        Slider("slope", 0.0, 2.0, 0.0, 1.0)


def test_integer_and_float_sliders_become_the_right_widgets():
    slope, points = (s.widget() for s in SLIDERS)
    assert isinstance(slope, ipywidgets.FloatSlider) and slope.value == 1.0
    assert isinstance(points, ipywidgets.IntSlider) and points.value == 10
    assert (points.min, points.max, points.step) == (2, 20, 1)


def test_check_extremes_tries_initial_values_and_all_corners():
    settings = check_extremes(line_plot, SLIDERS, title="t")
    assert settings[0] == {"slope": 1.0, "points": 10}
    assert {(s["slope"], s["points"]) for s in settings[1:]} == {
        (-2.0, 2),
        (-2.0, 20),
        (2.0, 2),
        (2.0, 20),
    }


def test_check_extremes_reports_a_plot_that_is_not_a_figure():
    with pytest.raises(TypeError, match="not a Figure"):
        check_extremes(lambda slope, points: None, SLIDERS)


def test_interact_shows_the_static_figure_and_returns_live_controls(capsys):
    box = interact(line_plot, SLIDERS, title="t")
    assert "[figure:" in capsys.readouterr().out  # the static figure (no notebook here)
    slope_widget = box.children[0].children[0]
    slope_widget.value = -2.0  # moving a slider redraws without error
    with pytest.raises(ValueError, match="unique"):
        interact(line_plot, [SLIDERS[0], SLIDERS[0]])
