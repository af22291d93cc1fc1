"""The results of ``wmtp compare``: per-problem JSONL, a table with intervals and paired differences, a plot.

Everything in the table is computed from ``problems.jsonl`` (one line per cell, seed and problem, with
that problem's pass@k) by :func:`compute_table`, so it can be recomputed, or redone another way, from
that file alone; the weight diagnostics come from each cell's training log (``cells/*.json``).

- ``problems.jsonl``, ``table.json``, ``table.md``, ``pass_at_1.png``, and the resolved recipe and
  versions (``recipe.yaml``, ``run_info.json``) beside them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from wmtp_cli.compare.statistics import bootstrap_mean, paired_difference
from wmtp_cli.io import atomic_write_text

MISSING = "-"


def problem_lines(cells_dir: Path) -> tuple[list[dict], dict[tuple, dict]]:
    """The per-problem lines of every finished cell, and each cell's weight diagnostics by (weighting, grid, seed)."""
    lines, diagnostics = [], {}
    for path in sorted(cells_dir.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        cell = record["cell"]
        diagnostics[(cell["weighting"], _grid(cell["grid"]), cell["seed"])] = record["weights"]
        for benchmark, result in sorted(record["benchmarks"].items()):
            for problem in result["problems"]:
                lines.append({"weighting": cell["weighting"], "grid_key": cell["grid_key"], "grid": cell["grid"],
                              "seed": cell["seed"], "benchmark": benchmark, **problem})  # fmt: skip
    return lines, diagnostics


def _grid(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def compute_table(lines: list[dict], baseline: str, diagnostics: dict[tuple, dict] | None = None) -> dict:
    """The comparison from per-problem lines (see the module docstring); ``diagnostics`` adds the weight columns."""
    by_benchmark: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_benchmark[line["benchmark"]].append(line)
    benchmarks = {name: _benchmark_table(rows, baseline, diagnostics) for name, rows in sorted(by_benchmark.items())}
    return {"baseline": baseline, "benchmarks": benchmarks}


def _benchmark_table(rows: list[dict], baseline: str, diagnostics: dict[tuple, dict] | None) -> dict:
    ks = sorted({k for row in rows for k in row["pass_at_k"]}, key=int)
    seeds = sorted({row["seed"] for row in rows})
    problems = sorted({row["task_id"] for row in rows})
    cells = sorted({(row["weighting"], _grid(row["grid"])) for row in rows}, key=lambda c: (c[1] or "", c[0]))
    value = {(r["weighting"], _grid(r["grid"]), r["seed"], r["task_id"]): r["pass_at_k"] for r in rows}

    def matrix(weighting: str, grid: str | None, k: str) -> list[list[float]]:
        """pass@k of one cell: a row per seed, a column per problem (the same order for every cell: paired)."""
        return [[value[(weighting, grid, seed, task)][k] for task in problems] for seed in seeds]

    out_rows = []
    for weighting, grid in cells:
        row: dict[str, Any] = {"weighting": weighting, "grid": None if grid is None else json.loads(grid),
                               "pass_at_k": {k: bootstrap_mean(matrix(weighting, grid, k)).as_dict() for k in ks},
                               "per_seed": {k: [sum(r) / len(r) for r in matrix(weighting, grid, k)] for k in ks},
                               "vs_baseline": None}  # fmt: skip
        if weighting != baseline and (baseline, grid) in cells:
            row["vs_baseline"] = {
                k: paired_difference(matrix(weighting, grid, k), matrix(baseline, grid, k)).as_dict() for k in ks
            }
        if diagnostics is not None:
            found = [diagnostics[key] for key in ((weighting, grid, seed) for seed in seeds) if key in diagnostics]
            row["weights"] = {name: _mean([d.get(name) for d in found]) for name in (found[0] if found else {})}
        out_rows.append(row)
    return {"k": ks, "seeds": seeds, "n_problems": len(problems), "rows": out_rows}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def write_comparison(plan, cells_dir: Path) -> dict:
    """Write the results of ``plan`` (a :class:`~wmtp_cli.compare.runner.ComparePlan`) from its finished cells."""
    lines, diagnostics = problem_lines(cells_dir)
    folder = plan.folder
    atomic_write_text(folder / "problems.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    table = compute_table(lines, plan.baseline, diagnostics)
    table["grid_key"] = plan.grid_key
    atomic_write_text(folder / "table.json", json.dumps(table, indent=1) + "\n")
    atomic_write_text(folder / "table.md", markdown(table))
    _plot(table, folder / "pass_at_1.png")
    return table


def _interval(d: dict, digits: int = 3) -> str:
    return f"{d['mean']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def _p_value(p: float) -> str:
    """A permutation p-value is never 0 (the observed arrangement counts): below the table's resolution, say so."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _label(row: dict, grid_key: str | None) -> str:
    return row["weighting"] + (f" ({grid_key.split('.')[-1]}={row['grid']})" if grid_key and row["grid"] is not None
                               else "")  # fmt: skip


def markdown(table: dict) -> str:
    """A Markdown table per benchmark: pass@k with its 95% interval, the difference from the baseline with its
    interval and p-value, and the weight diagnostics."""
    parts = []
    baseline, grid_key = table["baseline"], table.get("grid_key")
    for benchmark, result in table["benchmarks"].items():
        ks = result["k"]
        header = ["cell", *(f"pass@{k} (95% CI)" for k in ks), f"pass@{ks[0]} by seed",
                  *(f"Δpass@{k} vs {baseline} (95% CI; p)" for k in ks), "weight KL", "effective heads"]  # fmt: skip
        lines = [f"**{benchmark}**: {result['n_problems']} problems x seeds {result['seeds']} (by seed: in that "
                 "order); intervals by bootstrap over problems and seeds, p-values by paired permutation (same seed, "
                 "same problem).", "",
                 "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]  # fmt: skip
        for row in result["rows"]:
            weights = row.get("weights") or {}
            diffs = row["vs_baseline"]
            cells = [
                _label(row, grid_key),
                *(_interval(row["pass_at_k"][k]) for k in ks),
                " / ".join(f"{v:.3f}" for v in row["per_seed"][ks[0]]),
                *((f"{_interval(diffs[k])}; {_p_value(diffs[k]['p_value'])}" if diffs else MISSING) for k in ks),
                MISSING if weights.get("kl") is None else f"{weights['kl']:.4f}",
                MISSING if weights.get("effective_heads") is None else f"{weights['effective_heads']:.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _plot(table: dict, path: Path) -> None:
    """pass@1 of each cell with its 95% interval, one panel per benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = list(table["benchmarks"].items())
    figure, axes = plt.subplots(1, len(benchmarks), figsize=(5 * len(benchmarks), 3.6), squeeze=False)
    for axis, (benchmark, result) in zip(axes[0], benchmarks, strict=True):
        k = result["k"][0]
        rows = result["rows"]
        means = [row["pass_at_k"][k]["mean"] for row in rows]
        low = [row["pass_at_k"][k]["mean"] - row["pass_at_k"][k]["low"] for row in rows]
        high = [row["pass_at_k"][k]["high"] - row["pass_at_k"][k]["mean"] for row in rows]
        axis.errorbar(range(len(rows)), means, yerr=[low, high], fmt="o", capsize=4)
        axis.set_xticks(range(len(rows)), [_label(row, table.get("grid_key")) for row in rows], rotation=20,
                        ha="right")  # fmt: skip
        axis.set_ylabel(f"pass@{k} (95% CI)")
        axis.set_title(benchmark)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)
