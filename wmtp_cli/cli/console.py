"""Rich consoles shared by the command modules (rich output lives in the CLI layer only), and the one place
that prints an error."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

console = Console()
error_console = Console(stderr=True)


def fail(message: str, label: str = "error", code: int = 2, details: Sequence[str] = ()) -> NoReturn:
    """One red line on stderr (however long: soft wrap lets the terminal fold it), then exit ``code``.

    The message is printed as it is: brackets in a path or a type (``list[int]``) are not markup.
    ``details`` (``wmtp recipe validate``'s list of problems) follow it, one line each.
    """
    one_line = " ".join(message.split())
    error_console.print(f"[bold red]{label}:[/] {escape(one_line)}", highlight=False, soft_wrap=True, markup=True)
    for detail in details:
        error_console.print(f"  - {detail}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
