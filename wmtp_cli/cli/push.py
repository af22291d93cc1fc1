"""``wmtp push``: a model folder to the Hugging Face hub with a model card. A thin layer over :mod:`wmtp_cli.hub`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import command

app = typer.Typer()


@command(app, "push", "Upload a model folder to the hub, with a model card.")
def push_command(
    folder: Annotated[Path, typer.Argument(help="Model folder, e.g. a run's final/.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, owner/name (created if need be).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    commit_message: Annotated[
        str | None, typer.Option("--commit-message", help="Default: Upload FOLDER with wmtp VERSION.")
    ] = None,
    eval_files: Annotated[
        list[Path] | None,
        typer.Option("--eval", help="A `wmtp eval` summary JSON to report in the card (repeatable).", exists=True),
    ] = None,
) -> None:
    """Upload a model folder (a `train-wmtp` final/, a `download` or `pretrain` output, or a LoRA adapter) to a hub
    model repo in one commit, with a generated model card as README.md: base model and licence terms, training
    data, the resolved recipe, the weighting, eval figures (`wmtp eval` summaries of this folder found in eval/
    beside or above it, or given with --eval), and how to load it. A README.md already in the folder is uploaded
    instead of the card. The folder is not modified.

    Needs a token that can write to the repo: HF_TOKEN, or `hf auth login`. HF_ENDPOINT is honoured.

    Examples:
        wmtp push runs/tiny/wmtp-critic/final your-name/wmtp-critic-tiny
        wmtp push runs/7b/wmtp-critic/final your-org/mtp-7b-wmtp --private --eval runs/7b/eval/humaneval.json
    """
    from wmtp_cli.hub import push_model

    result = push_model(folder, repo_id, private=private, commit_message=commit_message,
                        eval_files=tuple(eval_files or ()))  # fmt: skip
    console.print(f"[green]ok[/] pushed {len(result.files)} files to {result.url} (model card: {result.card})")
