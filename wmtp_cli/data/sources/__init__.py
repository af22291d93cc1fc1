"""Where problems come from: one module per data source, each registering itself (:mod:`.registry`).

Registered here, in order: schemas are detected in this order (the first whose columns a data set has
wins). Adding a source is its module and one line below. :func:`load_problems` is the one entry point
that reads any of them (:mod:`.loading`).
"""

# isort: off
# Each import registers its source; the order is the order of schema detection.
from wmtp_cli.data.sources import codecontests  # noqa: F401
from wmtp_cli.data.sources import humaneval  # noqa: F401
from wmtp_cli.data.sources import mbpp  # noqa: F401
from wmtp_cli.data.sources import local  # noqa: F401
from wmtp_cli.data.sources import tiny_code  # noqa: F401
from wmtp_cli.data.sources import hub  # noqa: F401

# isort: on
from wmtp_cli.data.sources.registry import (
    SCHEMAS,
    SOURCES,
    Schema,
    Source,
    benchmark_names,
    register_source,
    source_named,
)

__all__ = [
    "SCHEMAS",
    "SOURCES",
    "Schema",
    "Source",
    "benchmark_names",
    "data_files",
    "load_problem_list",
    "load_problems",
    "read_files",
    "read_raw",
    "register_source",
    "source_named",
]


def __getattr__(name: str):
    # The readers import datasets and the recipe schema; loaded on first use, so that the recipe schema can
    # read the registry at start-up without a cycle.
    if name in ("load_problems", "load_problem_list", "read_raw", "read_files", "data_files", "normalise",
                "read_hub"):  # fmt: skip
        from wmtp_cli.data.sources import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
