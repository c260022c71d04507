"""Figures for files without touching matplotlib's global backend.

`matplotlib.use("Agg")` at import or call time switches pyplot's backend for the whole process, which breaks
inline plots in a Jupyter notebook that imports urep. `new_figure` instead builds a `matplotlib.figure.Figure`
attached to its own `FigureCanvasAgg`: it renders to PNG/PDF/SVG with `fig.savefig`, is never registered with
pyplot (nothing to close, nothing shown), and leaves whatever backend the user chose alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_figure"]


def new_figure(**kwargs: Any):
    """A pyplot-free `matplotlib.figure.Figure` on an Agg canvas.

    Args:
        **kwargs: `Figure` keyword arguments (`figsize`, `dpi`, ...).

    Returns:
        The figure; add axes with `fig.subplots(...)`, write it with `fig.savefig(path)`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
