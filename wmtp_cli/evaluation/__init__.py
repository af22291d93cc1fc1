"""Evaluation: pass@k on code benchmarks, from a model's samples or a samples file."""

from wmtp_cli.evaluation.benchmarks import BENCHMARKS, load_benchmark
from wmtp_cli.evaluation.harness import EvalReport, evaluate, group_samples, read_samples, write_report
from wmtp_cli.evaluation.pass_at_k import mean_pass_at_k, pass_at_k

__all__ = [
    "BENCHMARKS",
    "EvalReport",
    "evaluate",
    "group_samples",
    "load_benchmark",
    "mean_pass_at_k",
    "pass_at_k",
    "read_samples",
    "write_report",
]
