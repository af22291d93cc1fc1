"""``wmtp download``: a Meta MTP checkpoint (hub or local copy) to a Hugging Face style folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from wmtp_cli.cli.console import console

HELP = (
    "Fetch Meta's multi-token-prediction checkpoint (or read a local copy) and convert it to a Hugging Face "
    "style folder (safetensors, config, tokenizer).\n\n"
    "SOURCE is a hub repo id (default facebook/multi-token-prediction; gated: accept the licence on the hub and "
    "set HF_TOKEN) or a local folder in Meta's layout (variant folders with params.json and consolidated.pth, "
    "tokenizer.model at the root), converted with no network.\n\n"
    "[bold]Examples[/]\n\n"
    "  wmtp download facebook/multi-token-prediction --variant 7B_1T_4 --out checkpoints/7B_1T_4\n\n"
    "  wmtp download ~/meta-mtp --variant 7B_200B_4 --out checkpoints/7B_200B_4 --dtype bf16\n"
)


def register(app: typer.Typer) -> None:
    app.command("download", help=HELP, short_help="Fetch and convert Meta's MTP checkpoint.")(download_command)


def download_command(
    source: str = typer.Argument("facebook/multi-token-prediction", help="Hub repo id or local folder."),
    variant: str = typer.Option(None, "--variant", help="Variant folder, e.g. 7B_1T_4 (hub default 7B_1T_4)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default checkpoints/<variant>)."),
    dtype: str = typer.Option(None, "--dtype", help="fp32, bf16 or fp16 (default: the checkpoint's own)."),
    revision: str = typer.Option(None, "--revision", help="Hub branch, tag or commit."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    from wmtp_cli.convert import download

    columns = (TextColumn("converting"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("convert", total=None)
        result = download(
            source,
            out=out,
            variant=variant,
            dtype=dtype,
            force=force,
            revision=revision,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"[green]ok[/] wrote {result}")
    console.print("load it with: import wmtp_cli; AutoModelForCausalLM.from_pretrained(...)", style="dim")
