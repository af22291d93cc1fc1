"""``wmtp inspect-weights``: a critic's values, deltas and WMTP weights on one text. A thin layer over
:mod:`wmtp_cli.inspection`; the rich table is drawn here (rich output lives in the CLI layer only)."""

from __future__ import annotations

import io
import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from wmtp_cli.cli.console import console, error_console
from wmtp_cli.cli.options import command
from wmtp_cli.cli.progress import stage_progress
from wmtp_cli.io import atomic_write_text

app = typer.Typer()


BARS = "▁▂▃▄▅▆▇█"
VISIBLE = str.maketrans({" ": "·", "\t": "→", "\n": "↵", "\r": "␍"})
TOKEN_WIDTH = 24  # characters of a token shown in the table before it is cut


class Format(str, Enum):
    table = "table"
    json = "json"
    html = "html"


@command(app, "inspect-weights", "Per-token critic values, deltas and WMTP weights of a text.")
def inspect_weights_command(
    file: Annotated[Path, typer.Argument(help="Plain text file: the completion (and the prompt with --prompt-chars).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Model folder (a fine-tuned final/ carries its critic).")
    ] = None,
    critic: Annotated[
        Path | None, typer.Option("--critic", help="Folder with the value head (<run>/critic or a final/).")
    ] = None,
    runs: Annotated[
        Path, typer.Option("--runs", help="Where to look for the latest run when no --model/--critic is given.")
    ] = Path("runs"),
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="tau of softmax(delta / tau); default: the run's, else 1.")
    ] = None,
    prompt_file: Annotated[Path | None, typer.Option("--prompt-file", help="Text file with the prompt.")] = None,
    prompt_chars: Annotated[
        int | None, typer.Option("--prompt-chars", help="The first N characters of FILE are the prompt.", min=0)
    ] = None,
    format: Annotated[Format, typer.Option("--format", help="table, json or html.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of to the terminal.")] = None,
    rows: Annotated[int, typer.Option("--rows", help="Table rows to show; 0 = all.", min=0)] = 200,
) -> None:
    """Show what the critic makes of a text: for every token its value V_t, delta_t = V_t - V_{t-1}, and the
    weights w_{t,1..n} its position's heads give to the next n tokens (softmax of delta / temperature over the
    trained targets, the function training uses). FILE is plain text, a completion; with --prompt-file or
    --prompt-chars the prompt's tokens are shown as masked. With no --model and --critic it reads the latest run
    under --runs.

    Formats: table (default), json (one row per token: position, token, value, delta, weights, trained,
    received) and html (one self-contained page, tokens coloured by delta or by the weight they receive, numbers
    on hover). json and html go to stdout unless --out names a file.

    Examples:
        wmtp inspect-weights solution.py
        wmtp inspect-weights solution.py --prompt-file problem.txt --temperature 0.5 --rows 0
        wmtp inspect-weights sample.txt --prompt-chars 120 --format html --out weights.html
        wmtp inspect-weights sample.txt --model runs/r/wmtp-critic/final --format json --out weights.json
        wmtp inspect-weights sample.txt --critic runs/r/critic --model models/7b_n4
    """
    from wmtp_cli.inspection import inspect_file

    # notes and progress go to stderr when stdout carries the JSON or HTML
    notes = console if format is Format.table or out is not None else error_console
    with stage_progress(notes, transient=True) as progress:
        shown = inspect_file(
            file, model=model, critic=critic, runs=runs, temperature=temperature, prompt_file=prompt_file,
            prompt_chars=prompt_chars, out=out, progress=progress,
            announce=lambda line: notes.print(line, style="dim", highlight=False, soft_wrap=True),
        )  # fmt: skip
    if format is Format.table and out is None:
        console.print(inspection_table(shown.result, shown.header, rows))
    else:
        _emit(_document(shown, format, rows, title=f"WMTP weights: {file.name}"), out)


def _document(shown, format: Format, rows: int, title: str) -> str:
    """The inspection as the text of a file: JSON, an HTML page, or the table drawn without colour."""
    if format is Format.json:
        # one row per line: readable, and still one JSON list
        lines = ",\n".join(json.dumps(row, ensure_ascii=False) for row in shown.result.to_json())
        return f"[\n{lines}\n]\n"
    if format is Format.html:
        from wmtp_cli.inspection import render_html

        return render_html(shown.result, shown.header, title=title)
    text_console = Console(file=io.StringIO(), width=200, no_color=True, force_terminal=False)
    text_console.print(inspection_table(shown.result, shown.header, rows))
    return text_console.file.getvalue()


def _emit(content: str, out: Path | None) -> None:
    if out is None:
        typer.echo(content, nl=False)
        return
    atomic_write_text(out, content)
    console.print(f"[green]ok[/] wrote {out}")


def _visible(row) -> Text:
    if not row.text:  # BOS, or a byte of a character the next tokens finish
        return Text(row.piece, style="dim italic")
    shown = row.text.translate(VISIBLE)
    if len(shown) > TOKEN_WIDTH:
        shown = shown[: TOKEN_WIDTH - 1] + "…"
    return Text(shown)


def _delta_text(delta: float | None, scale: float) -> Text:
    if delta is None:
        return Text("-", style="dim")
    colour = "green" if delta >= 0 else "red"
    size = abs(delta) / scale if scale > 0 else 0.0
    style = f"bold {colour}" if size >= 0.5 else colour if size >= 0.15 else f"dim {colour}"
    return Text(f"{delta:+.4f}", style=style)


def _weights_text(weights: list[float]) -> Text:
    """A bar of n blocks (block k: w_{t,k}) and the numbers; brighter where a head gets more than a fair share."""
    valid = sum(w > 0 for w in weights)
    text = Text()
    for w in weights:
        if w <= 0:
            text.append("·", style="dim")
            continue
        share = w * valid  # 1 = what uniform weighting would give
        style = "bold magenta" if share >= 1.5 else "magenta" if share >= 0.75 else "dim magenta"
        text.append(BARS[min(len(BARS) - 1, int(w * len(BARS)))], style=style)
    # three characters a number (.31, 1.0) keep a row of 4 heads within 80 columns
    text.append("  " + " ".join("1.0" if w >= 0.995 else f"{w:.2f}"[1:] for w in weights), style="default")
    return text


def _pad(text: Text, width: int, right: bool = False) -> Text:
    gap = " " * max(0, width - text.cell_len)
    return Text.assemble(gap, text) if right else Text.assemble(text, gap)


def _token_lines(rows, scale: float, n_future: int) -> Text:
    """The per-token rows as fixed-width lines: a rich Table measures every cell, ~10x slower for 2,000 rows."""
    tokens = [_visible(row) for row in rows]
    pos_w = max(3, len(str(rows[-1].position)))
    tok_w = max(5, *(t.cell_len for t in tokens))
    heading = (
        f"{'pos':>{pos_w}}  {'token':<{tok_w}}  {'V_t':>8}  {'delta_t':>8}  w_t,1..{n_future} (to t+1..t+{n_future})"
    )
    out = Text(no_wrap=True, overflow="ellipsis")  # a wrapped row would read as two tokens
    out.append(heading, style="bold")
    out.append("\n" + "─" * len(heading))
    for row, token in zip(rows, tokens, strict=True):
        line = Text.assemble(
            f"{row.position:>{pos_w}}  ", _pad(token, tok_w), f"  {row.value:+8.4f}  ",
            _pad(_delta_text(row.delta, scale), 8, right=True), "  ", _weights_text(row.weights),
        )  # fmt: skip
        if not row.trained:
            line.stylize("dim")
        out.append("\n")
        out.append_text(line)
    return out


def inspection_table(result, header: dict[str, str], limit: int) -> Group:
    """The rich view of an InspectionResult: a summary, then one line per token (the first ``limit``; 0 = all)."""
    s = result.summary
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="dim")
    meta.add_column()
    for key, value in header.items():
        meta.add_row(key, value)
    meta.add_row("tokens", f"{s.n_tokens} ({s.n_trained} completion, {s.n_tokens - s.n_trained} prompt/BOS, masked)")
    meta.add_row("heads", str(s.n_future))
    meta.add_row("mean weight per head", "  ".join(f"h{k + 1} {w:.3f}" for k, w in enumerate(s.mean_weight_per_head)))
    meta.add_row("weight entropy", f"{s.weight_entropy:.3f} (uniform: {s.max_entropy:.3f} = log {s.n_future})")
    for label, text in s.diagnostic_rows():
        meta.add_row(label, text)
    top = ",  ".join(f"#{p} {tok.translate(VISIBLE)!r} {d:+.4f}" for p, tok, d in s.top_deltas)
    meta.add_row("largest |delta|", top or "-")
    for note in result.notes:
        meta.add_row("note", Text(note, style="yellow"))

    completion = [row for row in result.rows if row.trained and row.delta is not None]
    scale = max((abs(row.delta) for row in completion), default=0.0)
    shown = result.rows if limit == 0 else result.rows[:limit]
    table = _token_lines(shown, scale, s.n_future)
    parts = [meta, Text(""), table]
    hidden = len(result.rows) - len(shown)
    if hidden:
        parts.append(Text(f"{hidden} more rows: use --format json/html or --rows 0 for all", style="yellow"))
    parts.append(Text("dim rows: prompt tokens (masked, never a target)", style="dim"))
    return Group(*parts)
