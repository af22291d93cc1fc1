"""The results of a ``wmtp demo`` run as a self-contained HTML report and a Markdown comparison table.

The demo trains several models on the same data (critic-weighted WMTP, uniform MTP, next-token only) and
evaluates them on the same benchmark; the point of the run is the comparison, so it ends with one page that
puts it side by side with the evidence behind it: the critic's held-out AUC and whether its deltas land on
the tokens that break a solution, the training curves, the time each stage took and a few weight views.

The page is one file with inline CSS, the charts as base64 PNG and each weight view (itself a standalone
page) in an ``<iframe srcdoc>``, so it opens from disk and can be mailed or attached as it is. The Markdown
table is the part that goes into a README or a pull request.

A pure library module: it takes the run's :class:`~wmtp_cli.demo.summary.DemoSummary` and returns strings
and bytes or writes files atomically; it prints and logs nothing. matplotlib is imported only to draw a chart.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from wmtp_cli.demo.summary import CriticSummary, DemoSummary, ModelResult
from wmtp_cli.io import atomic_write_text

Series = dict[str, list[tuple[int, float]]]

TITLE = "WMTP demo report"
# The look of wmtp_cli.inspection.render_html (not imported: that module pulls in torch).
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; max-width: 72em; }
h1 { font-size: 1.3em; margin: 0 0 .5em; }
h2 { font-size: 1.1em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1em; margin: 1.2em 0 .4em; }
table.meta { border-collapse: collapse; font-size: .9em; margin-bottom: 1em; }
table.meta td { padding: 2px 12px 2px 0; vertical-align: top; }
table.meta td:first-child { color: #666; }
table.grid { border-collapse: collapse; font-size: .9em; margin: .4em 0 .8em; }
table.grid th, table.grid td { border: 1px solid #ccc; padding: 3px 10px; }
table.grid th { background: #fafafa; font-weight: 600; }
table.grid td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.grid tr.total td { font-weight: 600; }
.note { color: #555; font-size: .85em; max-width: 60em; }
img.chart { display: block; max-width: 100%; border: 1px solid #ddd; margin: .4em 0 1em; }
iframe.view { width: 100%; height: 420px; border: 1px solid #ccc; }
"""
MISSING = "-"


def _num(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def curve_png(series: Series, title: str, ylabel: str, xlabel: str = "step") -> bytes:
    """A line chart, one line per series name, as PNG bytes (640x360 px); empty series are left out."""
    points = {name: values for name, values in series.items() if values}
    if not points:
        raise ValueError(f"nothing to plot in {title!r}: every series is empty")
    # Figure + FigureCanvasAgg rather than pyplot: no global figure registry, no display, safe in threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in points.items():
        xs, ys = zip(*values, strict=True)
        # with a handful of points (an eval every few hundred steps) the markers show where the data is
        marker = "o" if len(values) <= 20 else None
        axes.plot(xs, ys, label=name, linewidth=1.5, marker=marker, markersize=3)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps, not 2.5 of them
    axes.grid(True, alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _eval_line(summary: DemoSummary) -> str:
    e = summary.eval
    return (
        f"{e.benchmark} {e.split} split: {e.n_problems} problems, "
        f"n = {e.n_samples} samples each at temperature {e.temperature:g}."
    )


def _head(values: Sequence[float] | None, index: int) -> float | None:
    return values[index] if values and index < len(values) else None


def _comparison_rows(summary: DemoSummary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison, shared by the Markdown and the HTML table (text not escaped)."""
    ks = summary.eval.k
    header = ["model", *(f"pass@{k}" for k in ks), "passed", "head-1 CE", "head-1 top-1", "train head-1 CE",
              "weight KL", "effective heads"]  # fmt: skip
    rows = []
    for model in summary.models:
        rows.append(
            [
                str(model.name),
                *(_num(model.pass_at(k)) for k in ks),
                f"{model.n_passed}/{model.n_samples_total}",
                _num(_head(model.head_ce, 0)),
                _num(_head(model.head_top1, 0)),
                _num(model.train_loss),
                _num(model.weights.get("kl")),
                _num(model.weights.get("effective_heads")),
            ]
        )
    return header, rows


def markdown_table(summary: DemoSummary) -> str:
    """A GitHub Markdown table comparing the models, under one line that says what they were evaluated on."""
    header, rows = _comparison_rows(summary)

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---", *(["---:"] * (len(header) - 1))]  # numbers right-aligned
    table = [line(header), "|" + "|".join(align) + "|", *(line(row) for row in rows)]
    return _eval_line(summary) + "\n\n" + "\n".join(table) + "\n"


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], total_last: bool = False) -> str:
    """A grid table; the first column is a label, the others numbers (right-aligned). Cells are escaped here."""
    rows = list(rows)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for i, row in enumerate(rows):
        label, *numbers = row
        cells = f"<td>{html.escape(label)}</td>" + "".join(f'<td class="n">{html.escape(c)}</td>' for c in numbers)
        css = ' class="total"' if total_last and i == len(rows) - 1 else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<table class="grid">\n<tr>{head}</tr>\n' + "\n".join(body) + "\n</table>"


def _per_head_table(models: list[ModelResult]) -> str:
    n_heads = max((len(values) for m in models for values in (m.head_ce, m.head_top1)), default=0)
    if n_heads == 0:
        return '<p class="note">No per-head numbers.</p>'
    heads = [f"h{i + 1}" for i in range(n_heads)]
    header = ["model", *(f"CE {h}" for h in heads), *(f"top-1 {h}" for h in heads)]
    rows = [
        [
            str(m.name),
            *(_num(_head(m.head_ce, i)) for i in range(n_heads)),
            *(_num(_head(m.head_top1, i)) for i in range(n_heads)),
        ]
        for m in models
    ]
    return _html_table(header, rows)


def _critic_section(critic: CriticSummary) -> str:
    rows = [
        ["held-out AUC, validation", _num(critic.val_auc)],
        [
            f"held-out AUC, test ({critic.n_test_correct} correct, {critic.n_test_incorrect} incorrect completions)",
            _num(critic.test_auc),
        ],
        [f"mean |delta| on mutated tokens ({critic.n_mutated_tokens} tokens)", _num(critic.mutated_abs_delta, 4)],
        [f"mean |delta| on other completion tokens ({critic.n_other_tokens} tokens)", _num(critic.other_abs_delta, 4)],
        ["ratio mutated / other", _num(critic.delta_ratio, 1)],
    ]
    note = (
        "AUC: how well the critic's value separates correct from incorrect completions it was not trained on "
        "(0.5 is chance). The |delta| ratio: how much more the critic's value moves on the tokens a mutation "
        "changed (the ones that broke a correct solution) than on the rest; well above 1 means the weights "
        "single out the tokens that matter."
    )
    return _html_table(["evidence", "value"], rows) + f'\n<p class="note">{note}</p>'


def _stage_table(seconds: dict[str, float | None]) -> str:
    total = seconds.get("total")
    rows = []
    for stage, value in seconds.items():
        if stage == "total":
            continue
        share = f"{100 * value / total:.0f}%" if value is not None and total else MISSING
        rows.append([stage, _num(value, 1), _duration(value), share])
    rows.append(["total", _num(total, 1), _duration(total), "100%" if total else MISSING])
    return _html_table(["stage", "seconds", "time", "share"], rows, total_last=True)


def _chart(title: str, series: Series) -> str:
    ylabel = "loss" if "loss" in title.lower() else "value"
    try:
        png = curve_png(series, title, ylabel)
    except ValueError:  # a stage that logged nothing should not cost the rest of the report
        return f'<h3>{html.escape(title)}</h3>\n<p class="note">No points recorded.</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="chart" src="data:image/png;base64,{data}" alt="{html.escape(title)}">'


def _view(caption: str, page: str) -> str:
    # srcdoc keeps the view's own CSS and script apart from the report's; sandboxed so its script runs
    # without reaching into this page.
    return (
        f"<h3>{html.escape(caption)}</h3>\n"
        f'<iframe class="view" sandbox="allow-scripts" title="{html.escape(caption)}" '
        f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
    )


def _meta(summary: DemoSummary) -> str:
    pretrain, score = summary.pretrain, summary.score
    cached = " (cached)" if pretrain.cached else ""
    meta = {
        "recipe": str(summary.recipe),
        "total time": _duration(summary.seconds.get("total")),
        "pretraining": f"{pretrain.steps} steps, final loss {_num(pretrain.loss)}{cached}",
        "scored completions": f"{score.completions} ({score.correct} correct)",
    }
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in meta.items())
    return f'<table class="meta">\n{rows}\n</table>'


def render_report(summary: DemoSummary, curves: dict[str, Series], views: list[tuple[str, str]]) -> str:
    """The whole report page: comparison, critic evidence, stage times, curves (``title -> series``), views."""
    header, rows = _comparison_rows(summary)
    charts = "\n".join(_chart(title, series) for title, series in curves.items()) or '<p class="note">None.</p>'
    frames = "\n".join(_view(caption, page) for caption, page in views) or '<p class="note">None.</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{TITLE}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{TITLE}</h1>
{_meta(summary)}
<h2>Comparison</h2>
<p>{html.escape(_eval_line(summary))}</p>
{_html_table(header, rows)}
<p class="note">Head-1 CE and top-1: cross-entropy and top-1 accuracy of the next-token head on the reference
solutions. Per head (h<i>k</i> predicts the token <i>k</i> positions ahead):</p>
{_per_head_table(summary.models)}
<h2>Critic</h2>
{_critic_section(summary.critic)}
<h2>Stage times</h2>
{_stage_table(summary.seconds)}
<h2>Curves</h2>
{charts}
<h2>Weight views</h2>
{frames}
</body>
</html>
"""


def write_report(summary: DemoSummary, curves: dict[str, Series], views: list[tuple[str, str]], folder: Path) -> Path:
    """Write ``folder/comparison.md`` and ``folder/report.html`` atomically; returns the report's path."""
    folder = Path(folder)
    atomic_write_text(folder / "comparison.md", markdown_table(summary))
    return atomic_write_text(folder / "report.html", render_report(summary, curves, views))
