"""Reports and figures: the self-contained HTML report of a store, matplotlib helpers."""

from assay.report.figures import data_uri, errorbars, new_figure, save_figure
from assay.report.html import render_report, write_report

__all__ = ["data_uri", "errorbars", "new_figure", "render_report", "save_figure", "write_report"]
