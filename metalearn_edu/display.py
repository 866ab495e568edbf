"""Showing figures in a notebook as images only, so that stored outputs carry no
``<Figure size ...>`` text and nbval compares nothing that depends on the renderer."""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure


def show(fig: Figure, dpi: int = 80) -> None:
    """Display ``fig`` as a PNG in the notebook (plain text elsewhere) and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is installed with the course
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({"image/png": base64.b64encode(buffer.getvalue()).decode()}, raw=True)
    else:
        print(f"[figure: {len(buffer.getvalue())} bytes of PNG; run in a notebook to see it]")
