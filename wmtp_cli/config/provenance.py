"""What produced an output: versions, source commit, command line, time.

Saved beside every output so a result can be traced to the code and settings that made it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from wmtp_cli.config.loader import recipe_to_yaml
from wmtp_cli.config.schema import Recipe
from wmtp_cli.io import atomic_write_text

PACKAGES = ("torch", "transformers", "accelerate", "datasets")


def package_version(name: str) -> str | None:
    """The installed version of the distribution ``name`` (read from its metadata, not imported); None if absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(source: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


def _git_state() -> dict[str, Any] | None:
    """Commit of the git checkout holding the wmtp_cli source, or None if it is not one.

    ``dirty`` means the package source differs from the commit (edited, or new files not yet
    committed); changes elsewhere in the checkout do not change what runs. The checkout must hold
    the package at its top level: an installed copy inside some other repository (a virtualenv in a
    project folder) is not that repository's code.
    """
    package = Path(__file__).resolve().parents[1]
    try:
        top = Path(_git(package, "rev-parse", "--show-toplevel")).resolve()
        if top != package.parent:
            return None
        commit = _git(package, "rev-parse", "HEAD")
        dirty = bool(_git(package, "status", "--porcelain", "--untracked-files=normal", "--", "."))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def collect_provenance() -> dict[str, Any]:
    """Versions of wmtp, Python and the ML libraries, the git state, the command line and the time."""
    from wmtp_cli import __version__

    return {
        "wmtp": __version__,
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
        "git": _git_state(),
        "argv": list(sys.argv),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_resolved_recipe(recipe: Recipe, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/recipe.yaml`` (the resolved recipe) and ``out_dir/run_info.json``.

    Returns the path of ``recipe.yaml``; passing it back to a command reruns the same settings.
    """
    out_dir = Path(out_dir)
    info = collect_provenance()
    command = shlex.join(info["argv"]).replace("\n", " ")  # one comment line, whatever the arguments
    header = (
        f"# Resolved recipe: defaults and overrides applied. Written by wmtp {info['wmtp']} "
        f"at {info['created_utc']}.\n"
        f"# Command: {command}\n"
    )
    atomic_write_text(out_dir / "run_info.json", json.dumps(info, indent=2) + "\n")
    return atomic_write_text(out_dir / "recipe.yaml", header + recipe_to_yaml(recipe))
