"""``wmtp env``: versions, devices, the sandbox's isolation and the cache locations, for bug reports."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import command

app = typer.Typer()


@command(app, "env", "Versions, devices, sandbox and caches, for bug reports.")
def env_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Print what a bug report needs: Python and platform, the versions of the packages that matter, the devices
    torch sees, the isolation that running generated code gets here (or why it refuses), and where downloads and
    caches go. Paste its output into an issue.

    Examples:
        wmtp env
        wmtp env --json > env.json
    """
    from wmtp_cli.environment import environment_report

    report = environment_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for section, value in report.items():
        if isinstance(value, dict):
            console.print(f"[bold]{section}[/]", highlight=False)
            for key, item in value.items():
                console.print(f"  {key}: {_plain(item)}", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(f"[bold]{section}[/]: ", end="", highlight=False)
            console.print(str(value), markup=False, highlight=False, soft_wrap=True)


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "none" if not value else "; ".join(", ".join(f"{k} {v}" for k, v in item.items()) for item in value)
    return str(value)
