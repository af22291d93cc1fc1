"""``wmtp plan``: memory per GPU, tokens and time of a recipe's run. A thin layer over :mod:`wmtp_cli.planning`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from wmtp_cli.cli.console import console, error_console
from wmtp_cli.cli.options import OverridesArg, command, recipe_arg

app = typer.Typer()


class Device(str, Enum):
    cuda = "cuda"
    cpu = "cpu"


@command(app, "plan", "Memory per GPU, tokens and time of a run, before it starts.")
def plan_command(
    recipe: recipe_arg("model, data, wmtp, run"),
    overrides: OverridesArg = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="Processes (GPUs) the run is launched on.")] = 1,
    gpu_memory: Annotated[float, typer.Option("--gpu-memory", min=0.001, help="Memory of one GPU, GiB.")] = 80.0,
    tflops: Annotated[
        float, typer.Option("--tflops", min=0.001, help="Peak dense bf16 TFLOP/s of one GPU (H100 SXM: 989).")
    ] = 989.0,
    mfu: Annotated[float, typer.Option("--mfu", min=0.001, max=1.0, help="Model FLOPs utilisation assumed.")] = 0.4,
    shape: Annotated[
        str | None, typer.Option("--shape", help="Meta variant whose shape to use (e.g. 7B_1T_4).")
    ] = None,
    device: Annotated[
        Device, typer.Option("--device", help="cuda (bf16 mixed precision) or cpu (fp32).")
    ] = Device.cuda,
) -> None:
    """Before any work: what the recipe's train-wmtp run needs per GPU (parameters trainable and frozen; bytes
    of weights, gradients and AdamW state under its strategy: one process, DDP, FSDP2 or LoRA; activations of a
    micro-batch with and without activation checkpointing and the head loop), its optimizer steps and tokens, and
    its time at --tflops per GPU and --mfu. Warns in one line when it will not fit --gpu-memory. The model's shape
    comes from model.path's config.json, or from Meta's published params.json of the variant the folder is named
    after (--shape) when it is not downloaded yet.

    Examples:
        wmtp plan recipes/mtp-7b-codecontests.yaml --gpus 8
        wmtp plan recipes/mtp-7b-codecontests-lora.yaml --gpu-memory 80
        wmtp plan recipes/tiny-demo.yaml --device cpu
    """
    from wmtp_cli.config import load_recipe
    from wmtp_cli.planning import build_plan

    resolved = load_recipe(recipe, overrides or (), need=("model",))
    plan = build_plan(resolved, gpus=gpus, gpu_memory_gib=gpu_memory, tflops=tflops, mfu=mfu, variant=shape,
                      device=device.value)  # fmt: skip
    console.print(_plan_table(plan, f"wmtp plan: {recipe} on {gpus} GPU(s), per GPU", gpu_memory, tflops, mfu))
    for note in plan.notes:
        console.print(f"note: {note}", style="dim")
    if plan.advice:
        error_console.print(f"warning: {plan.advice}", soft_wrap=True)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):,.2f} GiB"


def _plan_table(plan, title: str, gpu_memory: float, tflops: float, mfu: float):
    from rich.table import Table

    s, m, u = plan.shape, plan.memory, plan.setup
    table = Table(title=title, title_justify="left")
    table.add_column("what")
    table.add_column("per GPU", justify="right")
    rows = [
        ("model shape", f"d {s.hidden}, ffn {s.ffn}, {s.trunk_layers} trunk + {s.heads} head blocks, vocab {s.vocab}"),
        ("shape from", plan.source),
        ("parameters: trainable / frozen", f"{u.trainable:,} / {plan.frozen_parameters:,}"),
        ("strategy", f"{u.strategy}{' + LoRA' if u.lora else ''}, {u.param_dtype} weights, {u.compute_dtype} compute"),
        ("weights", _gib(m.weights)),
        ("gradients", _gib(m.gradients)),
        ("AdamW state", _gib(m.optimizer)),
        ("gathered blocks / DDP buckets", _gib(m.unsharded)),
        (f"activations ({u.micro_batch_tokens:,} tokens a micro-batch)", _gib(m.activations)),
        ("  without activation checkpointing", _gib(plan.memory_no_checkpointing)),
        ("  without the head loop", _gib(plan.memory_no_head_loop)),
        ("total per GPU", f"[bold]{_gib(m.total)}[/] of {gpu_memory:g} GiB"),
        ("optimizer steps", f"{plan.steps:,}"),
        ("tokens per step / in all (padded)", f"{plan.tokens_per_step:,} / {plan.tokens_total:,}"),
        ("compute", f"{plan.flops_total:.3g} FLOP"),
        (f"time at {tflops:g} TFLOP/s x {mfu:.0%} MFU", f"{plan.hours:,.2f} h"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table
