"""Weightings side by side over seeds (``wmtp compare``): the cells, their statistics and the report.

- :func:`plan_compare`, :func:`run_compare`: every (seed, weighting, grid value) cell of a recipe.
- :mod:`wmtp_cli.compare.statistics`: bootstrap intervals and paired permutation tests.
- :mod:`wmtp_cli.compare.report`: ``problems.jsonl``, ``table.json``/``table.md``, the plot.
"""

from wmtp_cli.compare.runner import (
    Cell,
    ComparePlan,
    CompareResult,
    parse_grid,
    parse_seeds,
    parse_weightings,
    plan_compare,
    run_compare,
)

__all__ = [
    "Cell",
    "ComparePlan",
    "CompareResult",
    "parse_grid",
    "parse_seeds",
    "parse_weightings",
    "plan_compare",
    "run_compare",
]
