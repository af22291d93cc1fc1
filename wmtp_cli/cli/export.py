"""``wmtp export``: a multi-token-prediction model folder as a plain Llama model (trunk + head 1)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import ForceOpt, command

app = typer.Typer()


class Target(str, Enum):
    """The formats --to takes (Typer refuses any other value with one line)."""

    llama = "llama"


@command(app, "export", "Export trunk + head 1 as a plain Llama model (vLLM, TGI, llama.cpp).")
def export_command(
    model: Annotated[Path, typer.Argument(help="MTP model folder (wmtp download, wmtp pretrain, a run's final/).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    to: Annotated[Target, typer.Option("--to", help="llama: trunk + head 1 as LlamaForCausalLM.")] = Target.llama,
    force: ForceOpt = False,
) -> None:
    """Write trunk + head 1 (the next-token head) of a multi-token-prediction model as a plain LlamaForCausalLM
    folder: safetensors weights in the model's dtype, config, generation config and tokenizer. Its logits are
    head 1's, so vLLM, TGI, llama.cpp's converter and transformers take it as any Llama model; heads 2..n and the
    value head are left out.

    Tensors are copied one at a time (at most one 1 GiB shard in memory). An existing --out is refused unless
    --force, which replaces only an earlier export or an empty folder.

    Examples:
        wmtp export runs/my-run/wmtp-critic/final --to llama --out exports/my-run-llama
        wmtp export checkpoints/7B_1T_4 --to llama --out exports/7B_1T_4-llama
    """
    from wmtp_cli.convert.llama_export import export_llama

    with console.status("exporting"):
        result = export_llama(model, out, force=force)
    console.print(f"[green]ok[/] wrote {result}")
    console.print(f"serve it with: vllm serve {result}", style="dim")
