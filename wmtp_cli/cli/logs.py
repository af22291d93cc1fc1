"""``wmtp -v``: the libraries' own logs on stderr, at INFO (``-v``) or DEBUG (``-vv``).

Without it, wmtp's progress and results are the output, and only warnings from the libraries show. The
levels of transformers, datasets and huggingface_hub are set through their environment variables when they
are not imported yet (importing transformers costs seconds, and most commands import it later or never).
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_FLAGS = ("-v", "-vv", "-vvv", "--verbose")
# Library loggers raised with the toolkit's: the ones whose messages say what a run is doing.
LIBRARY_LOGGERS = (
    "wmtp_cli",
    "accelerate",
    "transformers",
    "datasets",
    "huggingface_hub",
    "peft",
    "torch.distributed",
)
_LIBRARY_VERBOSITY_VARIABLES = ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY")


def verbosity_first(argv: list[str]) -> list[str]:
    """``argv`` with the verbose flags moved in front of the command, so ``wmtp eval r.yaml -v`` means
    ``wmtp -v eval r.yaml`` (the flag belongs to the root). Nothing after ``--`` moves."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [arg for arg in argv[:end] if arg in VERBOSE_FLAGS]
    rest = [arg for arg in argv[:end] if arg not in VERBOSE_FLAGS]
    return flags + rest + argv[end:]


def configure_logging(verbosity: int) -> None:
    """Send the libraries' logs to stderr at INFO (1) or DEBUG (2 or more); 0 leaves logging as it is."""
    if verbosity <= 0:
        return
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    name = logging.getLevelName(level).lower()
    for variable in _LIBRARY_VERBOSITY_VARIABLES:
        os.environ[variable] = name  # read at import by the libraries that are not imported yet
    from rich.logging import RichHandler

    from wmtp_cli.cli.console import error_console

    handler = RichHandler(console=error_console, show_path=verbosity > 1, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", handlers=[handler], force=True)
    for logger_name in LIBRARY_LOGGERS:
        logging.getLogger(logger_name).setLevel(level)
    if "transformers" in sys.modules:  # its own handler and level, set at import
        sys.modules["transformers"].logging.set_verbosity(level)
