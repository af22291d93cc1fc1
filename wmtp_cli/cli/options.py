"""What the command modules share, declared once (as huggingface_hub's ``cli/_cli_utils.py`` does): the
``Annotated`` aliases of the arguments and options several commands take, and the shape of a command's
``--help`` (what it does, then example command lines).

Imported by ``wmtp --help``: nothing heavier than typer here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., None])


def command(app: typer.Typer, name: str, short_help: str) -> Callable[[F], F]:
    """Add the decorated function to ``app`` as the command ``name``, listed by ``wmtp --help`` with ``short_help``.

    Its own ``--help`` is its docstring (:func:`help_text`).
    """

    def add(function: F) -> F:
        app.command(name, help=help_text(function.__doc__ or ""), short_help=short_help)(function)
        return function

    return add


def help_text(docstring: str) -> str:
    """A command's ``--help`` from its docstring: what it does, one line a paragraph for the terminal to fold,
    then the command lines after ``Examples:``, one each (the backslash that breaks a long one in the source
    joins it again, as in a shell)."""
    text, _, examples = inspect.cleandoc(docstring).partition("\n\nExamples:\n")
    paragraphs = [" ".join(paragraph.split()) for paragraph in text.split("\n\n")]
    lines = [" ".join(line.split()) for line in examples.splitlines() if line.strip()]
    shown = "\n\n".join(f"  {line}" for line in lines)
    return "\n\n".join(paragraphs) + "\n\n[bold]Examples[/]\n\n" + shown + "\n"


def recipe_arg(sections: str, optional: bool = False) -> Any:
    """The RECIPE argument of a command that reads these ``sections`` of it ("model, data, run")."""
    if optional:
        return Annotated[Path | None, typer.Argument(help=f"YAML recipe ({sections} sections); optional.")]
    return Annotated[Path, typer.Argument(help=f"YAML recipe ({sections} sections).")]


OverridesArg = Annotated[list[str] | None, typer.Argument(help="section.key=value overrides.")]
AllowCodeExecutionOpt = Annotated[
    bool,
    typer.Option(
        "--allow-code-execution",
        help="Allow running programs in the sandbox (or reward.allow_code_execution: true in the recipe).",
    ),
]
SandboxOpt = Annotated[
    str | None,
    typer.Option(
        "--sandbox",
        help="auto: bubblewrap, or refuse; bwrap; none: no isolation (unsafe: programs can read your files and reach "
        "the network). Default: the recipe's execution.isolation (auto).",
    ),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its latest checkpoint.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Start over: replace an existing output folder.")]
