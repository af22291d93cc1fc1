"""The scored data set: what ``wmtp score`` writes, the training stages read and ``wmtp pretrain`` reuses.

One row per (prompt, completion): its sequence reward, where the completion came from (``origin``:
solution, incorrect_solution or sample), its label (1 / 0 for the data set's solutions, none for
samples), what the sandbox saw when it ran (tests passed, tests, status) and the dense per-token rewards
(empty unless ``reward.dense``). Saved with ``datasets.save_to_disk``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wmtp_cli.errors import UsageError
from wmtp_cli.io import atomic_directory

if TYPE_CHECKING:
    from datasets import Dataset

# column -> datasets feature type ("float64[]" is a sequence of float64)
SCORED_SCHEMA = {
    "task_id": "string", "source": "string", "prompt": "string", "completion": "string", "reward": "float64",
    "origin": "string", "label": "int64", "n_passed": "int64", "n_tests": "int64", "status": "string",
    "dense_rewards": "float64[]",
}  # fmt: skip
SCORED_COLUMNS = tuple(SCORED_SCHEMA)
REQUIRED_COLUMNS = ("prompt", "completion", "reward")  # what training reads; the rest it can do without


def scored_row(task_id: str, source: str, prompt: str, completion: str, **columns: Any) -> dict:
    """A row with every column: the given ones, and none for the rest (an empty string or list for text and
    dense rewards; the reward step of ``wmtp score`` fills ``reward``)."""
    unknown = set(columns) - set(SCORED_SCHEMA)
    if unknown:
        raise ValueError(f"not columns of the scored data set: {sorted(unknown)}")
    row = {"task_id": task_id, "source": source, "prompt": prompt, "completion": completion, "reward": None,
           "origin": "", "label": None, "n_passed": None, "n_tests": None, "status": "",
           "dense_rewards": []}  # fmt: skip
    row.update(columns)
    return row


def _features():
    import datasets

    def feature(kind: str):
        if kind.endswith("[]"):
            return datasets.Sequence(datasets.Value(kind[:-2]))
        return datasets.Value(kind)

    return datasets.Features({name: feature(kind) for name, kind in SCORED_SCHEMA.items()})


def write_scored(rows: list[dict], out: Path) -> Path:
    """Save ``rows`` (each with every column of :data:`SCORED_SCHEMA`) at ``out``, whole or not at all."""
    import datasets

    table = datasets.Dataset.from_list([{k: row[k] for k in SCORED_COLUMNS} for row in rows], features=_features())
    with atomic_directory(out, force=True) as tmp:
        table.save_to_disk(str(tmp))
    return out


def load_scored(path: str | Path) -> Dataset:
    """The scored data set at ``path`` (``wmtp score``'s ``scored`` folder)."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.exists():
        raise UsageError(f"no scored data at {path}: run `wmtp score` with this recipe first, or set data.scored")
    try:
        scored = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"{path} is not a scored data set (datasets.load_from_disk failed: {exc})") from None
    missing = set(REQUIRED_COLUMNS) - set(scored.column_names)
    if missing:
        raise UsageError(f"{path} lacks the column(s) {sorted(missing)} that `wmtp score` writes")
    if len(scored) == 0:
        raise UsageError(f"{path} holds no scored completions")
    return scored
