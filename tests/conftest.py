"""Shared test helpers: run the ``wmtp`` command line in-process or in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _close_early_sandboxes():
    """``wmtp eval --allow-code-execution`` run in-process starts sandboxes before it parses its arguments; one that
    stops with a usage error leaves them for the next executor, which would take them: not across tests."""
    yield
    executor = sys.modules.get("wmtp_cli.execution.executor")
    if executor is not None:
        executor.close_early_sandboxes()


@pytest.fixture
def wmtp(capsys, monkeypatch):
    """Run ``wmtp ARGS...`` in this process (fast); ``env`` entries are set for the call."""
    from wmtp_cli.cli.app import main

    def run(*args: str, env: dict | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        if env and "HF_ENDPOINT" in env:  # the suite runs offline; a test that names an endpoint talks to localhost
            from huggingface_hub import constants

            monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def run_wmtp_subprocess(*args: str, env: dict | None = None) -> CliResult:
    """Run ``python -m wmtp_cli ARGS...`` in a fresh interpreter: for what is read at import (hub settings)."""
    env = dict(env or {})
    if "HF_ENDPOINT" in env:  # a test that names an endpoint talks to localhost
        env.setdefault("HF_HUB_OFFLINE", "0")
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    result = subprocess.run(
        [sys.executable, "-m", "wmtp_cli", *args], capture_output=True, text=True, env=full_env, timeout=300
    )
    return CliResult(result.returncode, result.stdout, result.stderr)


def assert_usage_error(result: CliResult, *needles: str, lines: int = 1) -> None:
    """One clear line on stderr (``lines`` for `wmtp recipe validate`'s list of problems), exit status 2, no
    traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == lines, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
