"""Run Python code in a fresh interpreter where ``import wmtp_cli`` fails: what a user without the toolkit has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Put first on sys.meta_path, before the editable install's finder: every wmtp_cli import raises.
HIDE_WMTP = """
import importlib.abc
import sys


class _NoWmtp(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "wmtp_cli":
            raise ImportError(f"{name} is not installed in this Python")


sys.meta_path.insert(0, _NoWmtp())
try:
    import wmtp_cli  # noqa: F401
    raise SystemExit("wmtp_cli imported although it is hidden")
except ImportError:
    pass
"""


def run_python(code: str, folder: Path, *args: str, hide_wmtp: bool = True) -> None:
    """Run ``code`` with ``args`` (``sys.argv[1:]``) in a fresh interpreter with ``folder`` as working directory and
    transformers' caches (remote code included) under it, offline; fail the test with its stderr if it fails."""
    env = {
        **os.environ,
        "HF_HOME": str(folder / "hf-home"),
        "HF_MODULES_CACHE": str(folder / "hf-modules"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("PYTHONPATH", None)
    source = (HIDE_WMTP if hide_wmtp else "") + code
    # stdin from /dev/null: transformers' "run custom code? [y/N]" prompt fails at once instead of waiting
    result = subprocess.run(
        [sys.executable, "-c", source, *args], cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
