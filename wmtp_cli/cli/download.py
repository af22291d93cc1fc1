"""``wmtp download``: a Meta MTP checkpoint (hub or local copy) to a Hugging Face style folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import ForceOpt, command

app = typer.Typer()


@command(app, "download", "Fetch and convert Meta's MTP checkpoint.")
def download_command(
    source: Annotated[str, typer.Argument(help="Hub repo id or local folder.")] = "facebook/multi-token-prediction",
    variant: Annotated[
        str | None, typer.Option("--variant", help="Variant folder, e.g. 7B_1T_4 (hub default 7B_1T_4).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default checkpoints/<variant>).")] = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="fp32, bf16 or fp16 (default: the checkpoint's own).")
    ] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Hub branch, tag or commit.")] = None,
    force: ForceOpt = False,
) -> None:
    """Fetch Meta's multi-token-prediction checkpoint (or read a local copy) and convert it to a Hugging Face
    style folder (safetensors, config, tokenizer).

    SOURCE is a hub repo id (default facebook/multi-token-prediction; gated: accept the licence on the hub and
    set HF_TOKEN) or a local folder in Meta's layout (variant folders with params.json and consolidated.pth,
    tokenizer.model at the root), converted with no network.

    Examples:
        wmtp download facebook/multi-token-prediction --variant 7B_1T_4 --out checkpoints/7B_1T_4
        wmtp download ~/meta-mtp --variant 7B_200B_4 --out checkpoints/7B_200B_4 --dtype bf16
    """
    from rich import progress as rich

    from wmtp_cli.convert import download

    columns = (rich.TextColumn("converting"), rich.BarColumn(), rich.DownloadColumn(), rich.TransferSpeedColumn(),
               rich.TimeRemainingColumn())  # fmt: skip
    with rich.Progress(*columns, console=console, transient=True) as bar:
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
    console.print(
        "load it with AutoModelForCausalLM.from_pretrained(folder) after `import wmtp_cli`, or with "
        "trust_remote_code=True anywhere (the folder carries its code); `wmtp export` makes a plain Llama of head 1",
        style="dim",
    )
