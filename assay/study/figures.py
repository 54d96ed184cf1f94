"""Figures for studies and the report: matplotlib on the Agg backend, saved reproducibly."""

from __future__ import annotations

import base64
from pathlib import Path

__all__ = ["EPISODE_TABLE", "PLANE_TABLE", "data_uri", "errorbars", "new_figure", "save_figure"]

# A study that trades safety against capability returns its points on the report's joint
# safety-performance plane as a table of this name, one row per point: ``series`` (what kind
# of intervention), ``protection`` (0 none .. 1 complete, in the study's own measure),
# ``benign_accuracy`` (0..1) and an optional ``label``.
PLANE_TABLE = "safety_performance_plane"
# A table of this name is one agent episode, rows (role, text) with role user, assistant,
# "assistant (call)", tool or checks: the report draws it as a transcript, calls marked.
EPISODE_TABLE = "episode"

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def new_figure(width: float = 5.5, height: float = 3.8, ncols: int = 1):
    """``(fig, axes)``: a figure on the Agg backend (no display needed), ``ncols`` panels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True)
    return fig, axes


def errorbars(estimates) -> tuple[list[float], list[list[float]]]:
    """(values, [[below...], [above...]]) of Estimates, as matplotlib's ``yerr``/``xerr`` want."""
    values = [e.value for e in estimates]
    return values, [[e.value - e.ci_low for e in estimates], [e.ci_high - e.value for e in estimates]]


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` (PNG at 120 dpi, or SVG) without timestamps, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    metadata = {"Software": None} if path.suffix == ".png" else {"Date": None}
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=metadata)
    plt.close(fig)
    return path


def data_uri(path: str | Path) -> str | None:
    """The file as a ``data:`` URI for embedding, or None if it is not an image we embed."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
