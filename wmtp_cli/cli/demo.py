"""``wmtp demo``: the whole pipeline on the tiny-code benchmark. A thin layer over :func:`wmtp_cli.demo.run_demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule
from rich.table import Table

from wmtp_cli.cli.console import console
from wmtp_cli.cli.progress import stage_progress

DEFAULT_RECIPE = Path("recipes/tiny-demo.yaml")

HELP = (
    "Run every stage of WMTP on the embedded tiny-code benchmark, on a laptop CPU in minutes, with no download: "
    "pretrain a small MTP model (cached after the first run), score the training solutions by running their tests "
    "in the sandbox, train the critic, fine-tune three ways from the same start (critic, uniform, ntp weighting), "
    "evaluate pass@k on the held-out test split, and show the critic's weights on one correct and one incorrect "
    "solution. Ends with a comparison table and writes <run folder>/demo/report.html.\n\n"
    "Every stage is also its own command (wmtp pretrain, score, train-critic, train-wmtp, eval, inspect-weights) "
    "on the same recipe.\n\n"
    "[bold]Examples[/]\n\n"
    "  wmtp demo\n\n"
    "  wmtp demo recipes/tiny-demo.yaml wmtp.max_steps=200 eval.n_samples=20\n"
)


def register(app: typer.Typer) -> None:
    app.command("demo", help=HELP, short_help="The whole pipeline on the embedded tiny-code benchmark.")(demo_command)


def demo_command(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with every section.")] = DEFAULT_RECIPE,
    overrides: Annotated[list[str] | None, typer.Argument(help="section.key=value overrides.")] = None,
    allow_code_execution: Annotated[
        bool,
        typer.Option(
            "--allow-code-execution", help="Allow running programs in the sandbox (or reward.allow_code_execution)."
        ),
    ] = False,
    force_pretrain: Annotated[
        bool, typer.Option("--force-pretrain", help="Pretrain again even when a model with these settings exists.")
    ] = False,
) -> None:
    from wmtp_cli.cli.inspect_weights import inspection_table
    from wmtp_cli.config import load_recipe
    from wmtp_cli.demo import run_demo

    resolved = load_recipe(recipe, overrides or ())
    with stage_progress() as progress:
        result = run_demo(
            resolved, str(recipe), allow_code_execution=allow_code_execution, force_pretrain=force_pretrain,
            progress=progress, announce=lambda stage: console.print(Rule(stage, align="left", style="dim")),
        )  # fmt: skip
    summary = result.summary
    for caption, view in result.views:
        console.print(Rule(f"inspect-weights, {caption}", align="left"))
        console.print(inspection_table(view, {"model": summary["models"][0]["model"]}, limit=0))

    console.print(Rule("results", align="left"))
    console.print(_comparison(summary))
    console.print(_critic(summary))
    seconds = summary["seconds"]
    console.print(f"took {seconds['total'] / 60:.1f} min (" + ", ".join(
        f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total") + ")", style="dim")  # fmt: skip
    console.print(f"[green]ok[/] report: {result.report}", soft_wrap=True)


def _comparison(summary: dict) -> Table:
    e = summary["eval"]
    title = (
        f"tiny-code test split: {e['n_problems']} held-out problems, n = {e['n_samples']} samples each "
        f"(temperature {e['temperature']:g})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for k in e["k"]:
        table.add_column(f"pass@{k}", justify="right")
    table.add_column("passed", justify="right")
    n_heads = max(len(m["head_ce"]) for m in summary["models"])
    for h in range(1, n_heads + 1):
        table.add_column(f"h{h} CE / top-1", justify="right")
    table.add_column("train h1 CE", justify="right")
    for m in summary["models"]:
        heads = [f"{ce:.3f} / {acc:.3f}" for ce, acc in zip(m["head_ce"], m["head_top1"], strict=True)]
        loss = "-" if m["train_loss"] is None else f"{m['train_loss']:.3f}"
        table.add_row(
            m["name"], *(f"{m['pass_at_k'][str(k)]:.3f}" for k in e["k"]),
            f"{m['n_passed']}/{m['n_samples_total']}", *heads, loss,
        )  # fmt: skip
    return table


def _critic(summary: dict) -> Table:
    c, s = summary["critic"], summary["score"]
    table = Table(title="critic (frozen pretrained model + value head)", title_justify="left", show_header=False)
    agreement = "-" if s["agreement"] is None else f"{s['agreement']:.3f}"
    table.add_row(
        "scored completions (passed / all)", f"{s['correct']} / {s['completions']}; agree with labels {agreement}"
    )
    auc = "-" if c["val_auc"] is None else f"{c['val_auc']:.3f}"
    table.add_row("final-value AUC, validation problems", auc)
    test_auc = "-" if c["test_auc"] is None else f"{c['test_auc']:.3f}"
    table.add_row(
        "final-value AUC, test split", f"{test_auc} ({c['n_test_correct']} correct, {c['n_test_incorrect']} incorrect)"
    )
    table.add_row(
        "mean |delta|: mutated / other tokens",
        f"{c['mutated_abs_delta']:.4f} / {c['other_abs_delta']:.4f} = {c['delta_ratio']:.1f}x "
        f"({c['n_mutated_tokens']} / {c['n_other_tokens']} tokens)",
    )
    return table
