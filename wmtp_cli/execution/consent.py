"""The explicit opt-in that running model-written code needs, as the common harnesses ask for."""

from __future__ import annotations

from wmtp_cli.errors import UsageError


def require_code_execution(allowed: bool, flag: str = "--allow-code-execution") -> None:
    """Raise :class:`UsageError` unless the user opted in; call it before running anything."""
    if not allowed:
        raise UsageError(
            f"running generated code needs {flag} (or reward.allow_code_execution: true in the recipe): "
            "the programs are model output and run on this machine, in a bubblewrap sandbox (never a perfect "
            "isolation)"
        )
