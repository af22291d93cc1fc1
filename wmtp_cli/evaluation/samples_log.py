"""The samples of an eval in progress, one problem a line, so an interrupted ``wmtp eval`` resumes.

``<summary stem>.samples.jsonl`` beside the summary: a first line ``{"wmtp_eval_samples": 1,
"settings": {...}}`` holding what the completions depend on (model, benchmark, decoding settings,
seed), then one line per problem in the order the problems were finished: ``{"task_id": ...,
"completions": [...]}`` (plus ``"decoding"``, the problem's own statistics, for self-speculative
decoding). Each line is appended with one write and flushed to disk, so a kill leaves at most one
partial last line, which :meth:`SamplesLog.open` drops. A file written with other settings
is replaced, with a warning: its samples would not be this run's. The file is removed once the
report is written (the per-problem results then hold every completion).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_write_text

logger = logging.getLogger(__name__)

MARKER = "wmtp_eval_samples"


def samples_log_path(summary: str | Path) -> Path:
    """Where the samples of the eval whose summary goes to ``summary`` are kept while it runs."""
    summary = Path(summary)
    return summary.with_name(f"{summary.stem}.samples.jsonl")


class SamplesLog:
    """The rows an interrupted run left (``rows``: task_id, completions, maybe decoding) and the file to extend."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]):
        self.path = path
        self.rows = rows

    @classmethod
    def open(cls, path: Path, settings: dict[str, Any], task_ids: Sequence[str]) -> SamplesLog:
        """The run's samples file at ``path``: what an earlier run with the same ``settings`` left there, or a
        new file when there is none or it was written otherwise.

        ``task_ids``: this run's problems; rows of other problems, and a second row of one, are dropped.
        """
        rows = _read(path, settings, task_ids) if path.exists() else []
        header = json.dumps({MARKER: 1, "settings": settings}) + "\n"
        atomic_write_text(path, header + "".join(json.dumps(r) + "\n" for r in rows))  # also drops a partial line
        return cls(path, rows)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add ``rows`` (whole lines, written at once and synced, so a kill cuts at most the last one)."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _read(path: Path, settings: dict[str, Any], task_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The rows in ``path`` that this run can take ([] with a warning when it was written with other settings);
    a file that is not an eval's samples file is refused, never replaced."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    header = _parse(lines[0])
    if not isinstance(header, dict) or header.get(MARKER) != 1:
        raise UsageError(
            f"{path} is in the way of eval's samples file and is not one: move it, or choose another --output"
        )
    written = header.get("settings", {})
    differs = [key for key in settings if written.get(key) != settings[key]]
    if differs:
        key = differs[0]
        why = (
            "the model's files have changed"
            if key == "model_files"
            else f"{key}={written.get(key)}, not {settings[key]}"
        )
        logger.warning("%s was written with other settings (%s): starting over", path, why)
        return []
    wanted, rows = set(task_ids), {}
    for line in lines[1:-1]:  # the last piece follows the last newline: empty, or a line cut by a kill
        row = _parse(line)
        if not isinstance(row, dict) or not isinstance(row.get("completions"), list):
            break  # a damaged line: generate the rest again
        if row.get("task_id") in wanted:
            rows.setdefault(row["task_id"], row)
    return list(rows.values())


def _parse(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
