"""The command line's habits: help that starts at once, -h, shell completion, ``wmtp env``, -v."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib import metadata

import pytest

from tests.conftest import REPO_ROOT
from wmtp_cli.cli.logs import LIBRARY_LOGGERS, verbosity_first

HEAVY = ("torch", "transformers", "datasets", "accelerate", "numpy")

# Each command line is run by `main` in one fresh interpreter, which then says which heavy modules it imported.
_IMPORTS_AFTER = """
import json, sys
from wmtp_cli.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)))
"""


def _heavy_imports(*args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = _IMPORTS_AFTER.format(heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args", [("--help",), ("--version",), ("eval", "--help"), ("train-wmtp", "-h"), ("recipe", "keys", "--help")]
)
def test_help_and_version_import_neither_torch_nor_transformers(args):
    assert _heavy_imports(*args) == []


def test_every_command_help_imports_nothing_heavy(wmtp):
    from wmtp_cli.cli.app import app

    names = [info.name for group in app.registered_groups for info in group.typer_instance.registered_commands]
    assert "env" in names and len(names) >= 11
    for name in names:
        assert _heavy_imports(name, "--help") == [], name


def test_short_help_flag_is_the_long_one(wmtp):
    assert wmtp("-h").stdout == wmtp("--help").stdout
    short, long = wmtp("eval", "-h"), wmtp("eval", "--help")
    assert short.returncode == 0 and short.stdout == long.stdout
    assert "Examples" in short.stdout


def test_shell_completion_script_and_candidates():
    # Typer detects the shell from the parent processes unless told not to, and then reads the shell from the
    # flag: without this the test would depend on whether it runs under a shell.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run([sys.executable, "-m", "wmtp_cli", "--show-completion", "bash"], capture_output=True,
                           text=True, env=env, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "_WMTP_COMPLETE=complete_bash" in shown.stdout
    completing = {**env, "_WMTP_COMPLETE": "complete_bash", "COMP_WORDS": "wmtp train-", "COMP_CWORD": "1"}
    candidates = subprocess.run([sys.executable, "-m", "wmtp_cli"], capture_output=True, text=True, env=completing,
                                timeout=120)  # fmt: skip
    assert candidates.stdout.split() == ["train-critic", "train-wmtp"], candidates


def test_env_json_reports_versions_devices_sandbox_and_caches(wmtp, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = wmtp("env", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"python", "platform", "packages", "devices", "sandbox", "caches"}
    assert report["packages"]["transformers"] == metadata.version("transformers")
    assert report["packages"]["wmtp-cli"] == metadata.version("wmtp-cli")
    assert isinstance(report["devices"]["gpus"], list)
    assert report["sandbox"]["auto"].startswith(("bwrap (", "refuses"))
    assert set(report["caches"]) >= {"HF_HOME", "hub cache", "datasets cache", "remote code (modules) cache"}


def test_env_text_names_every_section(wmtp):
    result = wmtp("env")
    assert result.returncode == 0, result.stderr
    for section in ("python", "packages", "devices", "sandbox", "caches"):
        assert section in result.stdout


def test_verbose_flags_move_to_the_root_but_not_past_a_double_dash():
    assert verbosity_first(["eval", "r.yaml", "-v"]) == ["-v", "eval", "r.yaml"]
    assert verbosity_first(["-vv", "eval"]) == ["-vv", "eval"]
    assert verbosity_first(["eval", "--", "-v"]) == ["eval", "--", "-v"]


def test_verbose_raises_the_library_loggers(wmtp, monkeypatch):
    for variable in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY"):
        monkeypatch.setenv(variable, "unset")  # recorded, so that what -vv sets is undone after the test
        monkeypatch.delenv(variable)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    for name in ("", *LIBRARY_LOGGERS):  # put every level back after the test
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    transformers_logging = pytest.importorskip("transformers.utils.logging")
    before = transformers_logging.get_verbosity()
    try:
        assert wmtp("env", "--json", "-vv").returncode == 0
        assert transformers_logging.get_verbosity() == logging.DEBUG
    finally:
        transformers_logging.set_verbosity(before)
    assert logging.getLogger("wmtp_cli").level == logging.DEBUG
    assert logging.getLogger("accelerate").level == logging.DEBUG
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "debug"
