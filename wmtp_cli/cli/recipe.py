"""``wmtp recipe``: check a recipe and list its keys. A thin layer over :mod:`wmtp_cli.config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from wmtp_cli.cli.console import console, fail

app = typer.Typer(
    help="Check YAML recipes and list the keys they take.\n\nExample: wmtp recipe keys wmtp",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@app.command("validate")
def validate_command(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe file.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="section.key=value settings that replace the recipe's, e.g. wmtp.temperature=0.5."),
    ] = None,
) -> None:
    """Check a recipe (with overrides) and print it with every default filled in.

    All problems are listed at once, each with its dotted key; the exit status is 2 if there are any.

    Example: wmtp recipe validate recipes/mtp-7b-codecontests.yaml wmtp.temperature=0.5
    """
    from wmtp_cli.config import load_recipe, recipe_to_yaml
    from wmtp_cli.errors import RecipeError

    try:
        resolved = load_recipe(recipe, overrides or ())
    except RecipeError as exc:
        if len(exc.problems) == 1:
            fail(f"{exc.source}: {exc.problems[0]}")
        else:  # several problems read best one per line
            fail(f"{exc.source}: {len(exc.problems)} problems", details=exc.problems)
    from rich.syntax import Syntax  # pygments: only when a recipe is shown, not for --help

    console.print(Syntax(recipe_to_yaml(resolved).rstrip(), "yaml", background_color="default"))
    console.print(f"[green]ok[/] {recipe} is valid", highlight=False)


@app.command("keys")
def keys_command(
    section: Annotated[
        str | None, typer.Argument(help="Only this section: model, data, reward, critic, wmtp, eval or run.")
    ] = None,
) -> None:
    """List every recipe key with its type, default and meaning.

    Example: wmtp recipe keys wmtp
    """
    from wmtp_cli.config import describe_keys

    table = Table("key", "type", "default", "help")
    for row in describe_keys(section):
        table.add_row(*(Text(cell) for cell in row))  # Text: 'list[int]' is not markup
    console.print(table)
