"""The ``wmtp`` Typer application: registers each command module and turns user errors into exit 2."""

from __future__ import annotations

import os
import sys

import typer

from wmtp_cli.cli import demo, download, eval, inspect_weights, pretrain, recipe, score, train_critic, train_wmtp
from wmtp_cli.cli.console import console, error_console

app = typer.Typer(
    name="wmtp",
    help="Critic-Weighted Multi-Token Prediction: fine-tune multi-token-prediction LMs with critic-assigned "
    "per-token loss weights.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from wmtp_cli import __version__

        typer.echo(f"wmtp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Critic-Weighted Multi-Token Prediction."""


demo.register(app)
download.register(app)
pretrain.register(app)
score.register(app)
train_critic.register(app)
train_wmtp.register(app)
eval.register(app)
recipe.register(app)
inspect_weights.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``wmtp`` console script.

    Typer handles its own usage errors, ``--help`` and ``Exit`` codes; a :class:`UsageError` from the
    library becomes one red line and exit status 2; a :class:`RunError` (a run that cannot go on, such as
    a NaN loss) one red line and exit status 1.
    """
    from wmtp_cli.errors import RunError, UsageError

    if int(os.environ.get("RANK", "0")) != 0:
        console.quiet = True  # under torchrun / accelerate launch, the main process alone draws progress and results
    try:
        app(args=argv)
    except UsageError as exc:
        error_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except RunError as exc:
        error_console.print(f"[bold red]stopped:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
