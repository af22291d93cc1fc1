"""Rich consoles shared by the command modules (rich output lives in the CLI layer only)."""

from rich.console import Console

console = Console()
error_console = Console(stderr=True)
