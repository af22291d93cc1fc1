"""Every command's ``--help``: what it does, then examples, built from the command function's docstring."""

from __future__ import annotations

import pytest

from wmtp_cli.cli.options import help_text

COMMANDS = ["demo", "download", "pretrain", "score", "train-critic", "train-wmtp", "eval", "compare", "plan",
            "inspect-weights"]  # fmt: skip


def test_help_text_joins_paragraph_lines_and_continued_examples():
    doc = """What it does,
    over two lines.

    A second paragraph.

    Examples:
        wmtp x a.yaml
        wmtp x a.yaml --long \
            --continued
    """
    assert help_text(doc) == (
        "What it does, over two lines.\n\nA second paragraph.\n\n[bold]Examples[/]\n\n"
        "  wmtp x a.yaml\n\n  wmtp x a.yaml --long --continued\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples_of_itself(wmtp, command):
    result = wmtp(command, "--help", env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("Examples", 1)[1].split("╭", 1)[0]  # up to the panel of arguments
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    assert lines and all(f" {command} " in f"{line} " for line in lines), lines


def test_a_long_example_shows_on_one_line(wmtp):
    result = wmtp("eval", "--help", env={"COLUMNS": "400"})
    assert "--k 1 --k 10 --temperature 0.8 --allow-code-execution" in result.stdout
