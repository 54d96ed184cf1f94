"""The self-contained HTML report of a store."""

from assay.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
