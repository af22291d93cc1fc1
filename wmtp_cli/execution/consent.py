"""The explicit opt-in that running model-written code needs, as the common harnesses ask for."""

from __future__ import annotations

from wmtp_cli.errors import UsageError


def require_code_execution(
    allowed: bool, flag: str = "--allow-code-execution", recipe_key: str | None = "reward.allow_code_execution"
) -> None:
    """Raise :class:`UsageError` unless the user opted in; call it before running anything.

    ``recipe_key``: the recipe setting that also opts in, named in the message; None where only the flag does.
    """
    if not allowed:
        alternative = f" (or {recipe_key}: true in the recipe)" if recipe_key else ""
        raise UsageError(
            f"running generated code needs {flag}{alternative}: "
            "the programs are model output and run on this machine, in a bubblewrap sandbox (never a perfect "
            "isolation)"
        )
