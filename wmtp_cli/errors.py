"""Errors a user can fix.

The library raises :class:`UsageError` for problems the user can correct (a bad path, a bad recipe,
no access to a gated repository). The CLI prints its message as one line and exits with status 2;
anything else is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """A problem the user can fix; the message says what to do."""


class RecipeError(UsageError):
    """A recipe with one or more problems; ``problems`` lists each with its dotted key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "; ".join(problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the recipe: {lines}")


class CheckpointError(UsageError):
    """A checkpoint that disagrees with its params.json, or is not in the layout we expect."""


class RunError(Exception):
    """A run that cannot go on (a NaN loss, say); the message says why and what is left on disk.

    Not the user's command line at fault, so the CLI exits with status 1 rather than 2, but still with
    one clear line instead of a traceback.
    """


def is_network_error(exc: BaseException) -> bool:
    """A failure to reach a server (the hub), from whichever HTTP client this huggingface_hub release uses."""
    package = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or package in {"httpx", "httpx2", "httpcore", "requests", "urllib3"}
