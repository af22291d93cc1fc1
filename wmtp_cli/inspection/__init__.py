"""Looking inside a trained critic: per-token values, deltas and WMTP weights of a text (`wmtp inspect-weights`)."""

from wmtp_cli.inspection.inspect_file import FileInspection, inspect_file
from wmtp_cli.inspection.locate import Sources, find_sources, latest_run
from wmtp_cli.inspection.render_html import render_html
from wmtp_cli.inspection.weights_view import (
    InspectionResult,
    InspectionSummary,
    TokenRow,
    inspect_weights,
    read_inspection_text,
    windowed_values,
)

__all__ = [
    "FileInspection",
    "InspectionResult",
    "InspectionSummary",
    "Sources",
    "TokenRow",
    "find_sources",
    "inspect_file",
    "inspect_weights",
    "latest_run",
    "read_inspection_text",
    "render_html",
    "windowed_values",
]
