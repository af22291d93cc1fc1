"""The ``wmtp`` Typer application: adds each command module's commands and turns user errors into exit 2."""

from __future__ import annotations

import os
import sys

import typer

from wmtp_cli.cli import (
    compare,
    demo,
    download,
    env,
    eval,
    export,
    inspect_weights,
    plan,
    pretrain,
    push,
    recipe,
    score,
    train_critic,
    train_wmtp,
)
from wmtp_cli.cli.console import console, fail
from wmtp_cli.cli.logs import configure_logging, verbosity_first

app = typer.Typer(
    name="wmtp",
    help="Critic-Weighted Multi-Token Prediction: fine-tune multi-token-prediction LMs with critic-assigned "
    "per-token loss weights.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
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
    verbose: int = typer.Option(
        0, "-v", "--verbose", count=True, help="Show the libraries' logs: -v info, -vv debug (anywhere on the line)."
    ),
) -> None:
    """Critic-Weighted Multi-Token Prediction."""
    configure_logging(verbose)


for command in (
    demo, download, pretrain, score, train_critic, train_wmtp, eval, compare, plan, inspect_weights, export, push,
    env,
):  # fmt: skip
    app.add_typer(command.app)  # a command module's app holds its one command: it joins the root's
app.add_typer(recipe.app, name="recipe")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``wmtp`` console script.

    Every problem the user can fix ends as one red line on stderr and exit status 2: Typer's own usage
    errors (a bad flag or value) and a :class:`UsageError` from the library alike. A :class:`RunError`
    (a run that cannot go on, such as a NaN loss) is one red line and exit status 1.
    """
    from wmtp_cli.errors import RunError, UsageError

    # Typer >= 0.22 ships its own copy of click: take the exception classes from wherever Typer's come from.
    click_errors = sys.modules[typer.BadParameter.__module__]
    no_args_is_help = getattr(click_errors, "NoArgsIsHelpError", ())

    if int(os.environ.get("RANK", "0")) != 0:
        console.quiet = True  # under torchrun / accelerate launch, the main process alone draws progress and results
    argv = verbosity_first(sys.argv[1:] if argv is None else list(argv))
    _start_sandboxes_early(argv)
    try:
        code = app(args=argv, prog_name="wmtp", standalone_mode=False)  # also under `python -m wmtp_cli`
    except no_args_is_help as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click_errors.ClickException as exc:
        where = f"; see `{exc.ctx.command_path} --help`" if getattr(exc, "ctx", None) else ""
        fail(f"{exc.format_message()}{where}", "error", exc.exit_code)
    except typer.Abort:
        fail("interrupted", "stopped", 130)
    except UsageError as exc:
        fail(str(exc), "error", 2)
    except RunError as exc:
        fail(str(exc), "stopped", 1)
    if isinstance(code, int) and code:
        sys.exit(code)


def _start_sandboxes_early(argv: list[str]) -> None:
    """``wmtp eval ... --allow-code-execution``: its sandboxes start now, on the idle core, while Typer parses and
    the benchmark loads (0.15 s); the executor takes them. Any other command, or ``--help``, starts nothing."""
    words = [arg for arg in argv if not arg.startswith("-")]
    if words[:1] != ["eval"] or "--allow-code-execution" not in argv or {"-h", "--help"} & set(argv):
        return
    sandbox = "auto"
    for index, arg in enumerate(argv):
        if arg == "--sandbox" and index + 1 < len(argv):
            sandbox = argv[index + 1]
        elif arg.startswith("--sandbox="):
            sandbox = arg.partition("=")[2]
    from wmtp_cli.execution.executor import start_sandboxes_early

    start_sandboxes_early(sandbox)
